"""Shared matplotlib set-up for report figures: headless, consistent, atomic saves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # jobs run on nodes without a display

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from cxrlib.io import write_atomic

# Every text is literal: a class or run name with "$" signs must not be parsed as mathtext
# (matplotlib raises on unbalanced or unknown TeX and would fail the figure's job).
matplotlib.rcParams["text.parse_math"] = False

SYNTHETIC_NOTE = "synthetic phantom data (not real patients)"


def save_figure(fig: Figure, target: Path, *, synthetic: bool = False, dpi: int = 120) -> None:
    """Save a figure as PNG atomically; phantom-based figures carry a visible label saying so."""
    if synthetic:
        # Above everything else, so it never covers an axis label; bbox "tight" keeps it.
        fig.text(0.0, 1.02, SYNTHETIC_NOTE, ha="left", va="bottom", fontsize=8, color="firebrick")
    write_atomic(target, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))
    plt.close(fig)
