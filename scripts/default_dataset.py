"""Print the dataset the scripts train on: MNIST where its files are on this machine, else
Fashion-MNIST where they are (setup.sh installs Debian's dataset-fashion-mnist), else MNIST,
which fflearn then downloads. A checkout away from the project's shared data folder (no MNIST
on disk, no internet) still gets a real training run this way."""

from fflearn.data import find_data_dir

if find_data_dir("mnist") is None and find_data_dir("fashion-mnist") is not None:
    print("fashion-mnist")
else:
    print("mnist")
