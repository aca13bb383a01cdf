"""DCGAN training figures: losses and the discriminator's outputs by epoch."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxrlib.plotting import plt, save_figure
from cxrlib.scoring.figures import PROGRESS_LABELS


def plot_training_curves(
    train_log: pd.DataFrame, out_png: Path, *, synthetic: bool = False
) -> None:
    """Losses (top) and mean D outputs (bottom) against epoch, from `train_log.csv`.

    D(x) and D(G(z)) near 0.5 mean D cannot tell real from fake; D(G(z)) pinned at 0 with a
    rising G loss is the usual sign that G has fallen behind.
    """
    log = train_log.sort_values("epoch")
    fig, (ax_loss, ax_d) = plt.subplots(2, 1, figsize=(6.5, 5.5), sharex=True)
    ax_loss.plot(log["epoch"], log["loss_d"], label="D loss")
    ax_loss.plot(log["epoch"], log["loss_g"], label="G loss")
    ax_loss.set_ylabel("BCE loss (epoch mean)")
    ax_loss.legend()
    ax_d.plot(log["epoch"], log["d_real"], label="D(x), real")
    ax_d.plot(log["epoch"], log["d_fake"], label="D(G(z)), generated")
    ax_d.axhline(0.5, color="gray", lw=0.8, ls=":")
    ax_d.set_ylim(0, 1)
    ax_d.set_ylabel("mean D output (probability)")
    ax_d.set_xlabel(PROGRESS_LABELS["epoch"])
    ax_d.legend()
    fig.suptitle("DCGAN training", fontsize=10)
    save_figure(fig, Path(out_png), synthetic=synthetic)
