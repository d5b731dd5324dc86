"""Training on several processes with torch.distributed (docs/distributed.md).

* :mod:`.ranks`: where a rank stands, joining the process group, collectives;
* :mod:`.data`: data parallel (``--nproc N``, or torchrun), any method;
* :mod:`.pipeline`: the layer-parallel pipeline (``--pipeline N``), local methods with a static scheme;
* :mod:`.launch`: starting N local ranks, and one rank's life from start to summary.

All of them run the trainer's one epoch loop; each overrides only what differs (where a step's
batch comes from, what it sends on, and the clock every rank agrees on).
"""
