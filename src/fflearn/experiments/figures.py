"""The look of every fflearn figure: a colour-blind-safe palette, legends instead of labels on the
lines, integer epoch ticks, PNG for screens and PDF for papers.

The palette is Okabe and Ito's (2008), distinguishable under the common colour-vision
deficiencies; series beyond eight also change marker, so they stay apart in greyscale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import FFLearnError

# Okabe-Ito: blue, orange, bluish green, vermillion, reddish purple, sky blue, yellow, black
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
FORMATS = ("png", "pdf")


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def style(i: int) -> dict[str, Any]:
    """Colour and marker of series ``i``."""
    return {"color": PALETTE[i % len(PALETTE)], "marker": MARKERS[(i // len(PALETTE) + i) % len(MARKERS)]}


def epoch_axis(ax: Any, epochs: list[int]) -> None:
    """Integer epoch ticks, and a sensible range for a run of one or two epochs."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if epochs and max(epochs) - min(epochs) < 2:
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)


def out_dir(path: str | Path) -> Path:
    """Create an output folder (one-line error when impossible)."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FFLearnError(f"cannot create output folder {p}: {e.strerror or e}") from None
    return p


def save(fig: Any, folder: Path, name: str, formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Write ``fig`` as ``folder/name.{png,pdf}`` and close it; returns the paths."""
    plt = pyplot()
    fig.tight_layout()
    paths = []
    for fmt in formats:
        path = folder / f"{name}.{fmt}"
        fig.savefig(path, dpi=150 if fmt == "png" else None, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths
