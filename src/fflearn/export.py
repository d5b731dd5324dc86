"""Using a trained run outside fflearn: export to a file plain PyTorch loads, predict image files.

``export`` writes the :class:`fflearn.runs.Model` (normalisation inside, (B, K) scores out) as
TorchScript (``torch.jit.load``) or as a ``torch.export`` ExportedProgram (``torch.export.load``,
then ``.module()``); either runs without fflearn installed. Both are traced at the run's input
shape with a float image batch in [0, 1]; the batch size stays free.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError, FFLearnError
from .runs import Model, load

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def example_input(model: Model, batch: int = 2) -> torch.Tensor:
    c = int(model.mean.shape[1])
    shape = _input_hw(model)
    return torch.rand(batch, c, *shape)


def _input_hw(model: Model) -> tuple[int, int]:
    hw = getattr(model, "input_hw", None)
    if hw is None:
        raise FFLearnError("this model does not record its input size")
    return hw


def export(run_dir: str | Path, fmt: str, out: str | Path) -> Path:
    """Write the run's model to ``out`` as ``torchscript`` or ``exported-program``."""
    model = load(run_dir)
    x = example_input(model)
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot write --out {out}: {e.strerror or e}") from None
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer warns about Python numbers it keeps constant (a layer's width): they are constant
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        if fmt == "torchscript":
            traced = torch.jit.trace(model, x, check_trace=False)
            traced.save(str(out))
        elif fmt == "exported-program":
            batch = torch.export.Dim("batch", min=1, max=1 << 16)
            prog = torch.export.export(model, (x,), dynamic_shapes={"x": {0: batch}})
            torch.export.save(prog, str(out))
        else:
            raise ConfigError(f"--format must be torchscript or exported-program; got {fmt!r}")
    return out


def image_files(paths: list[str]) -> list[Path]:
    """The image files named, folders expanded (sorted), or one error naming what is missing."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise ConfigError(f"no such image file or folder: {p}")
    if not out:
        raise ConfigError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(paths)}")
    return out


def read_image(path: Path, channels: int, hw: tuple[int, int]) -> torch.Tensor:
    """An image file as a uint8 (C, H, W) tensor in the model's channels and size (resized
    bilinearly when it differs)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            img = im.convert("L" if channels == 1 else "RGB")
            if img.size != (hw[1], hw[0]):
                img = img.resize((hw[1], hw[0]), Image.Resampling.BILINEAR)
            a = np.asarray(img, dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as e:
        raise ConfigError(f"cannot read image {path}: {e}") from None
    t = torch.from_numpy(a.copy())
    return t[None] if t.dim() == 2 else t.permute(2, 0, 1)


def predict_files(run_dir: str | Path, paths: list[str], device: str = "cpu") -> list[tuple[str, str, float]]:
    """(file, predicted class name, its softmax probability) for every image."""
    model = load(run_dir, device=device)
    files = image_files(paths)
    c, hw = int(model.mean.shape[1]), _input_hw(model)
    rows = []
    with torch.no_grad():
        for s in range(0, len(files), 256):
            chunk = files[s : s + 256]
            x = torch.stack([read_image(f, c, hw) for f in chunk]).to(device)
            p = model(x).softmax(1)
            conf, cls = p.max(1)
            rows += [(str(f), model.classes[int(k)], float(v)) for f, k, v in zip(chunk, cls, conf, strict=True)]
    return rows
