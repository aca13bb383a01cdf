"""DCGAN report figures: training curves, fixed-noise grids over epochs, the snapshot sweep."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxrlib.metrics.reference import floor_label, format_fid
from cxrlib.metrics.sweep import not_computable_lines
from cxrlib.report.figures import plt, save_figure

SWEEP_COLUMNS = ("epoch", "extractor", "fid", "kid_mean", "kid_std", "diversity_ratio", "best")


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
    ax_d.set_ylabel("mean D output")
    ax_d.set_xlabel("epoch")
    ax_d.legend()
    fig.suptitle("DCGAN training", fontsize=10)
    save_figure(fig, Path(out_png), synthetic=synthetic)


def _spread(epochs: list[int], k: int) -> list[int]:
    """At most `k` of the sorted `epochs`, evenly spaced, first and last always included."""
    if len(epochs) <= k:
        return epochs
    picks = np.linspace(0, len(epochs) - 1, num=k).round().astype(int)
    return [epochs[i] for i in sorted(set(picks))]


def plot_grids_across_epochs(
    grid_pngs: Mapping[int, Path],
    out_png: Path,
    *,
    max_panels: int = 8,
    unit: str = "epoch",
    title: str = "DCGAN",
    synthetic: bool = False,
) -> None:
    """The fixed-noise grids of several epochs side by side (the same z in every panel).

    `unit` names what the keys count ("epoch"; "kimg" for StyleGAN2-ADA) and `title` the model.

    With more than `max_panels` epochs an evenly spaced subset is shown (first and last kept).
    """
    if not grid_pngs:
        raise ValueError("no grids to plot")
    epochs = _spread(sorted(grid_pngs), max_panels)
    cols = min(4, len(epochs))
    rows = -(-len(epochs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, epoch in zip(axes.flat, epochs, strict=False):
        with Image.open(grid_pngs[epoch]) as im:
            pixels = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
        ax.imshow(pixels, cmap="gray" if pixels.ndim == 2 else None, vmin=0, vmax=255)
        ax.set_title(f"{unit} {epoch}", fontsize=9)
    fig.suptitle(f"{title} samples from fixed noise across {unit}s", fontsize=10)
    save_figure(fig, Path(out_png), synthetic=synthetic)


def floor_lines(sweep: pd.DataFrame) -> list[dict[str, object]]:
    """The real-vs-real floor of each (extractor, reference) of a sweep table, as drawn.

    One dict per pair whose rows carry a finite `real_floor_fid` (see
    cxrlib.metrics.reference.attach_floors): extractor, reference, fid, kid_mean, density,
    coverage (NaN where not computed or not in the table) and label ("real train half vs
    half (cxr) = 4.8"). Tables without floors give [].
    """
    if "real_floor_fid" not in sweep.columns or "reference" not in sweep.columns:
        return []
    out = []
    for (extractor, reference), rows in sweep.groupby(["extractor", "reference"], sort=True):
        fid = float(rows["real_floor_fid"].iloc[0])
        if not np.isfinite(fid):
            continue
        set_a, _, set_b = str(rows["real_floor"].iloc[0]).partition(" vs ")
        other = {
            key: float(rows.get(f"real_floor_{key}", pd.Series([np.nan])).iloc[0])
            for key in ("kid_mean", "density", "coverage")
        }
        out.append(
            {
                "extractor": str(extractor),
                "reference": str(reference),
                "fid": fid,
                **other,
                "label": f"{floor_label(set_a, set_b)} ({extractor}) = {format_fid(fid)}",
            }
        )
    return out


def _wide(values: list[float]) -> bool:
    """Positive values spanning more than 50x: a log axis shows both ends."""
    finite = [v for v in values if np.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > 50


def plot_sweep(
    sweep: pd.DataFrame,
    out_png: Path,
    *,
    progress: str = "epoch",
    title: str = "DCGAN",
    synthetic: bool = False,
) -> None:
    """FID, KID (mean +- std), density and coverage (when the table has them: Naeem et al.
    2020, in each extractor's feature space) and diversity ratio against epoch, one colour per
    extractor.

    `progress` is the column on the x axis ("epoch"; "kimg" for StyleGAN2-ADA, whose collapse
    column is then `collapse_kimg`).

    `sweep`: one row per (snapshot epoch, extractor[, reference]) with SWEEP_COLUMNS and
    optionally `reference` (the real set compared against: one line style each) and
    `collapse_epoch` (NaN when no collapse was detected). The best snapshot (`best` true) is
    starred on every line; a detected collapse is a red vertical line. NaN scores (a reference
    split too small for a metric) leave gaps, and the reasons from the `not_computable` column
    are printed under the axes ("n/a: ...").

    Rows carrying their real floors (`real_floor_fid`, `real_floor_kid_mean`,
    `real_floor_density`, `real_floor_coverage`, `real_floor`) get a thin horizontal line per
    (extractor, reference) on each of those panels, in the curve's colour and style at the
    matching real-vs-real value, labelled in the legend and at the line ("real train vs
    test (cxr) = 1,067"): a score at its line is as far as real images are from each other.
    FID (and KID when positive) switch to a log axis when the values span more than 50x, so a
    FID of 2 against train and 1,000 against test are both readable.
    """
    if progress != "epoch":  # score tables carry both columns; the other one is empty
        sweep = sweep.drop(columns=["epoch", "collapse_epoch"], errors="ignore")
        sweep = sweep.rename(columns={progress: "epoch", f"collapse_{progress}": "collapse_epoch"})
    missing = set(SWEEP_COLUMNS) - set(sweep.columns)
    if missing:
        raise ValueError(f"sweep table lacks column(s) {', '.join(sorted(missing))}")
    has_reference = "reference" in sweep.columns
    extractors = sorted(sweep["extractor"].astype(str).unique())
    references = sorted(sweep["reference"].astype(str).unique()) if has_reference else [""]
    colors = {e: f"C{i}" for i, e in enumerate(extractors)}
    styles = {r: ("-", "--", ":", "-.")[i % 4] for i, r in enumerate(references)}
    has_dc = {"density", "coverage"} <= set(sweep.columns)
    fig, axes = plt.subplots(5 if has_dc else 3, 1, figsize=(6.5, 12 if has_dc else 8), sharex=True)
    ax_fid, ax_kid, ax_div = axes[0], axes[1], axes[-1]
    panels = [(ax_fid, "fid"), (ax_kid, "kid_mean"), (ax_div, "diversity_ratio")]
    if has_dc:
        ax_density, ax_coverage = axes[2], axes[3]
        panels[2:2] = [(ax_density, "density"), (ax_coverage, "coverage")]
    keys = ["extractor", "reference"] if has_reference else ["extractor"]
    for key, rows in sweep.sort_values("epoch").groupby(keys, sort=True):
        extractor, reference = (str(key[0]), str(key[1]) if has_reference else "")
        color, style = colors[extractor], styles[reference]
        label = f"{extractor} vs {reference}" if has_reference else extractor
        if not np.isfinite(rows["fid"].to_numpy(float)).any():
            label += " (FID n/a)"
        best = rows[rows["best"].astype(bool)]
        ax_fid.plot(rows["epoch"], rows["fid"], ls=style, marker=".", color=color, label=label)
        ax_kid.plot(rows["epoch"], rows["kid_mean"], ls=style, marker=".", color=color)
        ax_kid.fill_between(
            rows["epoch"],
            rows["kid_mean"] - rows["kid_std"],
            rows["kid_mean"] + rows["kid_std"],
            color=color,
            alpha=0.15,
        )
        for ax, column in panels:
            if column != "fid" and column != "kid_mean":
                ax.plot(rows["epoch"], rows[column], ls=style, marker=".", color=color)
            ax.scatter(best["epoch"], best[column], marker="*", s=160, color=color, zorder=3)
    if "collapse_epoch" in sweep.columns:
        collapses = sorted(set(sweep["collapse_epoch"].dropna()))
        for i, epoch in enumerate(collapses):
            for ax in axes:
                ax.axvline(
                    epoch,
                    color="firebrick",
                    lw=1.5,
                    alpha=0.6,
                    label=f"collapse ({progress} {epoch:g})" if ax is ax_fid and i < 3 else None,
                )
    floors = floor_lines(sweep)
    for floor in floors:
        color = colors.get(str(floor["extractor"]), "gray")
        style = styles.get(str(floor["reference"]), "-")
        for ax, key in panels:
            if key not in floor or not np.isfinite(float(floor[key])):
                continue
            ax.axhline(
                float(floor[key]),
                color=color,
                ls=style,
                lw=1.0,
                alpha=0.55,
                label=f"floor: {floor['label']}" if ax is ax_fid else None,
            )
    fid_values = [*sweep["fid"].to_numpy(float), *(float(f["fid"]) for f in floors)]
    log_fid = _wide(fid_values)
    if log_fid:
        ax_fid.set_yscale("log")
    # Each floor's label at its line's right end; labels of close floors are stacked upwards
    # (in points) so that they never print over each other.
    fig.canvas.draw()
    last_pt = -np.inf
    for floor in sorted(floors, key=lambda f: float(f["fid"])):
        y_pt = ax_fid.transData.transform((0.0, float(floor["fid"])))[1] * 72 / fig.dpi
        lift = max(0.0, last_pt + 8.0 - y_pt)  # 8 pt: one line of 6-pt text
        last_pt = y_pt + lift
        ax_fid.annotate(
            str(floor["label"]),
            (1.0, float(floor["fid"])),
            xycoords=("axes fraction", "data"),
            xytext=(-2, 1.5 + lift),
            textcoords="offset points",
            ha="right",
            va="bottom",
            fontsize=6,
            color=colors.get(str(floor["extractor"]), "gray"),
        )
    kid_values = [*sweep["kid_mean"].to_numpy(float), *(float(f["kid_mean"]) for f in floors)]
    if _wide(kid_values):
        ax_kid.set_yscale("log")
    ax_fid.scatter([], [], marker="*", s=80, color="gray", label="best snapshot")
    ax_fid.set_ylabel("FID (lower is better)" + (", log scale" if log_fid else ""))
    ax_kid.set_ylabel("KID mean +- std")
    if has_dc:
        ax_density.axhline(1.0, color="gray", lw=0.8, ls=":")
        ax_density.set_ylabel("density (~1: spread\nlike the reals)")
        ax_coverage.set_ylabel("coverage\n(share of reals covered)")
        ax_coverage.set_ylim(-0.02, 1.02)
    ax_div.axhline(1.0, color="gray", lw=0.8, ls=":")
    ax_div.set_ylabel("diversity ratio\n(generated / real)")
    ax_div.set_xlabel(progress)
    if ax_fid.get_legend_handles_labels()[0]:
        # beside the axes, never over the curves ("tight" saving makes room for it)
        # long handles: a dashed reference's line must read as dashed beside its marker
        ax_fid.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                      borderaxespad=0, handlelength=4.5)  # fmt: skip
    fig.suptitle(f"{title} snapshots: fidelity and diversity by {progress}", fontsize=10)
    shown = ("FID", "KID", *(("density/coverage",) if has_dc else ()), "diversity ratio")
    notes = not_computable_lines(sweep, metrics=shown)
    if notes:
        more = [f"... and {len(notes) - 6} more (see the sweep table)"] if len(notes) > 6 else []
        text = "\n".join(textwrap.fill(f"n/a: {n}", 140) for n in notes[:6] + more)
        # Below the axes: bbox "tight" grows the saved figure to hold it.
        fig.text(0.01, 0.0, text, fontsize=6, va="top", ha="left")
    save_figure(fig, Path(out_png), synthetic=synthetic)
