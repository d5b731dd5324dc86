"""Benchmarks of fflearn: ``fflearn bench speed|mfu|tta|peers``.

* :mod:`.speed`: training images per second per method and model, and the ratio to BP;
* :mod:`.mfu`: training FLOPs per second over a matmul peak measured on the same machine;
* :mod:`.tta`: training time to a target test accuracy;
* :mod:`.peers`: public forward-forward code (a re-implementation of mpezeshki's recipe,
  PyPI ``fflib``) timed on the same machine against fflearn's DF.

Each prints a table and, with ``--json FILE``, writes ``{"results": [...], "device": ...,
"threads": ..., "torch": ...}``. ``bench/README.md`` of the repository says what is measured and
the pitfalls (thread counts, warm-up, device synchronisation).
"""

from __future__ import annotations

SUBCOMMANDS = ("speed", "mfu", "tta", "peers")
