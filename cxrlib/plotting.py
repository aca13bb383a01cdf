"""Shared matplotlib set-up for report figures: headless, consistent, atomic saves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # jobs run on nodes without a display

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from cxrlib.io import write_atomic

SYNTHETIC_NOTE = "synthetic phantom data (not real patients)"


def plain(text: object) -> str:
    """A name from the data or the config as literal figure text: a "$" would start mathtext,
    which matplotlib refuses when unbalanced or unknown and which would fail the figure's job
    (tick labels need mathtext on, so it stays on, and names are escaped instead)."""
    return str(text).replace("$", r"\$")


def save_figure(fig: Figure, target: Path, *, synthetic: bool = False, dpi: int = 120) -> None:
    """Save a figure as PNG atomically; phantom-based figures carry a visible label saying so."""
    if synthetic:
        # Above everything else, so it never covers an axis label; bbox "tight" keeps it.
        fig.text(0.0, 1.02, SYNTHETIC_NOTE, ha="left", va="bottom", fontsize=8, color="firebrick")
    write_atomic(target, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))
    plt.close(fig)
