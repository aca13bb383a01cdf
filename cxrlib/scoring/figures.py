"""Figures of a generator's snapshots, for any GAN: fixed-noise grids across training and the
snapshot sweep (FID, KID, precision, density, coverage, diversity against training progress)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxrlib.plotting import plt, save_figure
from cxrlib.scoring.reference import floor_label, format_fid
from cxrlib.scoring.sweep import not_computable_lines

SWEEP_COLUMNS = ("epoch", "extractor", "fid", "kid_mean", "kid_std", "diversity_ratio", "best")


def _spread(epochs: list[int], k: int) -> list[int]:
    """At most `k` of the sorted `epochs`, evenly spaced, first and last always included."""
    if len(epochs) <= k:
        return epochs
    picks = np.linspace(0, len(epochs) - 1, num=k).round().astype(int)
    return [epochs[i] for i in sorted(set(picks))]


# What the report's image pane shows without shrinking at a laptop's window (1400 px: the
# results list takes the rest), in inches at the figures' 120 dpi: figures stay within it so
# that their text stays readable (tests/test_workflow.py checks every figure in Chromium).
PANE_WIDTH_IN = 7.2


def plot_grids_across_epochs(
    grid_pngs: Mapping[int, Path],
    out_png: Path,
    *,
    max_panels: int = 6,
    unit: str = "epoch",
    title: str = "DCGAN",
    columns: int | None = None,
    show: int = 4,
    synthetic: bool = False,
) -> None:
    """The fixed-noise grids of several epochs side by side (the same z in every panel).

    `unit` names what the keys count ("epoch"; "kimg" for StyleGAN2-ADA) and `title` the model.
    With `columns` (images per row of the stored grids) each panel shows only the first
    `show` x `show` images, large enough to see (a study's 8 x 8 grids at full size would be
    16 px tiles); the same images in every panel.

    With more than `max_panels` epochs an evenly spaced subset is shown (first and last kept).
    """
    if not grid_pngs:
        raise ValueError("no grids to plot")
    epochs = _spread(sorted(grid_pngs), max_panels)
    cols = min(3, len(epochs))
    rows = -(-len(epochs) // cols)
    side = PANE_WIDTH_IN / cols
    fig, axes = plt.subplots(rows, cols, figsize=(PANE_WIDTH_IN, side * rows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, epoch in zip(axes.flat, epochs, strict=False):
        with Image.open(grid_pngs[epoch]) as im:
            pixels = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
        if columns and columns > show:
            keep = show / columns  # the first show x show tiles (gaps make this approximate)
            pixels = pixels[: round(pixels.shape[0] * keep), : round(pixels.shape[1] * keep)]
        ax.imshow(pixels, cmap="gray" if pixels.ndim == 2 else None, vmin=0, vmax=255)
        ax.set_title(f"{unit} {epoch}", fontsize=8)
    shown = f" (the first {show} x {show})" if columns and columns > show else ""
    fig.suptitle(f"{title} samples from fixed noise across {unit}s{shown}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, Path(out_png), synthetic=synthetic)


def floor_lines(sweep: pd.DataFrame) -> list[dict[str, object]]:
    """The real-vs-real floor of each (extractor, reference) of a sweep table, as drawn.

    One dict per pair whose rows carry a finite `real_floor_fid` (see
    cxrlib.scoring.reference.attach_floors): extractor, reference, fid, kid_mean, precision,
    density, coverage (NaN where not computed or not in the table) and label ("real train half
    vs half (cxr) = 4.8"). Tables without floors give [].
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
            for key in ("kid_mean", "precision", "density", "coverage")
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


# What the x axis counts, in words (the unit of training progress).
PROGRESS_LABELS = {
    "epoch": "epoch (passes over the training images)",
    "kimg": "kimg (thousands of real images shown to D)",
}
# Panels of the sweep figure: (column, y-axis label with its unit, reference line or None).
_PANELS = (
    ("fid", "FID (squared feature distance;\nlower is better)", None),
    ("kid_mean", "KID ± std (MMD², cubic kernel;\nunitless, lower is better)", None),
    ("precision", "precision (dots) / recall (x)\n(shares, 0-1)", None),
    ("density", "density (unitless;\n~1: spread like the reals)", 1.0),
    ("coverage", "coverage\n(share of reals covered, 0-1)", None),
    ("diversity_ratio", "diversity ratio\n(generated / real, unitless)", 1.0),
)


def plot_sweep(
    sweep: pd.DataFrame,
    out_png: Path,
    *,
    progress: str = "epoch",
    title: str = "DCGAN",
    synthetic: bool = False,
) -> None:
    """FID, KID (mean +- std), precision, density, coverage (Naeem et al. 2020) and the
    diversity ratio against training progress, in a 2 x 3 grid of panels that fits a laptop's
    window; one colour per extractor, one line style per reference split. Panels whose
    column the table lacks (older tables: precision, density, coverage) are left out.

    `progress` is the column on the x axis ("epoch"; "kimg" for StyleGAN2-ADA, whose collapse
    column is then `collapse_kimg`); the title gives the run's resolution where the table
    has a `resolution` column (FIDs of different resolutions are not comparable).

    `sweep`: one row per (snapshot epoch, extractor[, reference]) with SWEEP_COLUMNS and
    optionally `reference` (the real set compared against) and `collapse_epoch` (NaN when no
    collapse was detected). The best snapshot (`best` true) is starred on every line; a
    detected collapse is a red vertical line. NaN scores (a reference split too small for a
    metric) leave gaps, and the reasons from the `not_computable` column are printed under the
    axes ("n/a: ...").

    Rows carrying their real floors (`real_floor_fid`, `real_floor_kid_mean`,
    `real_floor_precision`, `real_floor_density`, `real_floor_coverage`, `real_floor`) get a
    thin horizontal line per (extractor, reference) on each of those panels, in the curve's
    colour and style, labelled in the legend ("real train vs test (cxr) = 1,067"): a score at
    its line is as far as real images are from each other. On the FID panel the band below
    the real train-vs-test floor is shaded: a FID against test there cannot show a better
    generator (small-sample bias, or a shifted test split), so a curve rising inside it is not
    "getting worse". FID (and KID when positive) switch to a log axis when the values span
    more than 50x.
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
    panels = [p for p in _PANELS if p[0] in sweep.columns]
    copies = "near_copy_share" in sweep and np.isfinite(sweep.near_copy_share.to_numpy(float)).any()
    if len(extractors) > 1:
        # spaces have their own scales: each one's FID over its lowest puts them side by side
        sweep = sweep.copy()
        groups = sweep.groupby(["extractor", "reference"] if has_reference else ["extractor"])
        sweep["fid_relative"] = sweep.fid / groups.fid.transform("min")
        panels.insert(
            1, ("fid_relative", "FID / the space's lowest\n(unitless; spaces compared)", 1.0)
        )
    cols = 2  # two columns of panels fit the report's image pane with readable text
    slots = len(panels) + copies  # the last: FID against the near-copy share
    rows_n = -(-slots // cols)
    fig, grid = plt.subplots(
        rows_n, cols, figsize=(PANE_WIDTH_IN, 1.75 * rows_n + 0.6), squeeze=False
    )
    for ax in grid.flat[slots:]:
        ax.axis("off")
    axes = {column: ax for (column, _, _), ax in zip(panels, grid.flat, strict=False)}
    for ax in list(axes.values())[1:]:
        ax.sharex(grid.flat[0])
    ax_fid = axes["fid"]
    keys = ["extractor", "reference"] if has_reference else ["extractor"]
    for key, rows in sweep.sort_values("epoch").groupby(keys, sort=True):
        extractor, reference = (str(key[0]), str(key[1]) if has_reference else "")
        color, style = colors[extractor], styles[reference]
        label = f"{extractor} vs {reference}" if has_reference else extractor
        if not np.isfinite(rows["fid"].to_numpy(float)).any():
            label += " (FID n/a)"
        best = rows[rows["best"].astype(bool)]
        for column, ax in axes.items():
            ax.plot(
                rows["epoch"],
                rows[column],
                ls=style,
                marker=".",
                color=color,
                label=label if column == "fid" else None,
            )
            ax.scatter(best["epoch"], best[column], marker="*", s=120, color=color, zorder=3)
        if "precision" in axes and "recall" in rows:  # recall beside precision, thinner
            axes["precision"].plot(
                rows["epoch"], rows["recall"], ls=style, marker="x", ms=4, lw=0.8,
                color=color, alpha=0.6,
            )  # fmt: skip
        axes["kid_mean"].fill_between(
            rows["epoch"],
            rows["kid_mean"] - rows["kid_std"],
            rows["kid_mean"] + rows["kid_std"],
            color=color,
            alpha=0.15,
        )
    if "collapse_epoch" in sweep.columns:
        for i, epoch in enumerate(sorted(set(sweep["collapse_epoch"].dropna()))):
            for ax in axes.values():
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
        for column, ax in axes.items():
            value = float(floor.get(column, np.nan))
            if not np.isfinite(value):
                continue
            ax.axhline(
                value,
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
    test_floors = [float(f["fid"]) for f in floors if f["reference"] == "test"]
    if test_floors:
        low = ax_fid.get_ylim()[0]
        ax_fid.axhspan(
            low,
            max(test_floors),
            color="0.85",
            alpha=0.5,
            lw=0,
            zorder=0,
            label="below the real train-vs-test FID:\nno quality signal against test",
        )
        ax_fid.set_ylim(bottom=low)
    kid_values = [*sweep["kid_mean"].to_numpy(float), *(float(f["kid_mean"]) for f in floors)]
    if _wide(kid_values):
        axes["kid_mean"].set_yscale("log")
    for column, label, line in panels:
        ax = axes[column]
        if line is not None:
            ax.axhline(line, color="gray", lw=0.8, ls=":")
        if column in ("precision", "coverage"):
            ax.set_ylim(-0.03, 1.03)
        ax.set_ylabel(label + (" (log)" if ax.get_yscale() == "log" else ""), fontsize=7)
        ax.tick_params(labelsize=6.5)
        ax.grid(alpha=0.25)
    # the x axis under every panel with no panel below it (the last row, and above an empty
    # slot when the panels do not fill the grid)
    for i, ax in enumerate(axes.values()):
        if i + cols >= len(panels):  # no panel of the same x axis below it
            ax.set_xlabel(PROGRESS_LABELS.get(progress, progress), fontsize=7)
        else:
            ax.xaxis.set_tick_params(labelbottom=False)
    if copies:
        _plot_fid_vs_copies(
            grid.flat[len(panels)], sweep, colors, styles.get("train", "-"), progress
        )
    ax_fid.scatter([], [], marker="*", s=80, color="gray", label="best snapshot")
    if "near_copy_skipped" in sweep and sweep.near_copy_skipped.astype(bool).any():
        ax_fid.scatter(
            [], [], marker="x", s=60, color="firebrick", label="near-copy share over its limit"
        )
    handles, labels = ax_fid.get_legend_handles_labels()
    if handles and slots < grid.size:  # in the empty slot: the figure stays short
        grid.flat[slots].legend(
            handles, labels, fontsize=6.5, loc="center", handlelength=4.0, frameon=False
        )
    elif handles:
        # below the panels, never over the curves ("tight" saving makes room for it); long
        # handles: a dashed reference's line must read as dashed beside its marker
        fig.legend(
            handles,
            labels,
            fontsize=6.5,
            loc="upper center",
            bbox_to_anchor=(0.5, 0.0),
            ncol=min(2, len(handles)),
            handlelength=4.0,
            frameon=False,
        )
    px = _resolution_of(sweep)
    at = f", {px} px" if px else ""
    fig.suptitle(f"{title} snapshots{at}: fidelity and diversity by {progress}", fontsize=9)
    fig.tight_layout()
    shown = ("FID", "KID", "precision/recall", "density/coverage", "diversity ratio")
    notes = not_computable_lines(sweep, metrics=shown)
    if notes:
        more = [f"... and {len(notes) - 6} more (see the sweep table)"] if len(notes) > 6 else []
        text = "\n".join(textwrap.fill(f"n/a: {n}", 110) for n in notes[:6] + more)
        # Below the legend: bbox "tight" grows the saved figure to hold it.
        fig.text(0.01, -0.12, text, fontsize=6, va="top", ha="left")
    save_figure(fig, Path(out_png), synthetic=synthetic)


def _plot_fid_vs_copies(
    ax: plt.Axes, sweep: pd.DataFrame, colors: dict[str, str], style: str, progress: str
) -> None:
    """Fidelity against memorisation: each snapshot's FID against train over its near-copy
    share (cxrlib.memorisation.share), one line per feature space in training order (its first
    and last snapshot named), each space's limit a thin vertical line; the best snapshot
    starred, those over the limit crossed."""
    rows = sweep[sweep.reference == "train"] if "reference" in sweep else sweep
    for extractor, points in rows.sort_values("epoch").groupby("extractor", sort=True):
        color = colors[str(extractor)]
        ax.plot(points.near_copy_share, points.fid, marker=".", color=color, lw=0.8, ls=style)
        best = points[points.best.astype(bool)]
        ax.scatter(best.near_copy_share, best.fid, marker="*", s=120, color=color, zorder=3)
        if "near_copy_skipped" in points:
            over = points[points.near_copy_skipped.astype(bool)]
            ax.scatter(
                over.near_copy_share, over.fid, marker="x", s=60, color="firebrick", zorder=4
            )
        for _, end in points.iloc[[0, -1]].iterrows():
            if np.isfinite(float(end.near_copy_share)) and np.isfinite(float(end.fid)):
                ax.annotate(
                    f"{progress} {float(end.epoch):g}", (end.near_copy_share, end.fid),
                    fontsize=5.5, color=color, xytext=(4, -2), textcoords="offset points",
                    va="top",
                )  # fmt: skip
        limits = points.near_copy_limit.dropna() if "near_copy_limit" in points else []
        if len(limits):
            limit = float(limits.iloc[0])
            ax.axvline(limit, color=color, lw=0.8, alpha=0.6)
            ax.annotate(
                f"limit {limit:.2f}", (limit, 1), xycoords=("data", "axes fraction"),
                xytext=(3, -3), textcoords="offset points", va="top", fontsize=5.5, color=color,
            )  # fmt: skip
    if _wide(rows.fid.to_numpy(float)):
        ax.set_yscale("log")
    ax.set_xlim(-0.03, 1.03)
    ax.set_title("memorisation: fidelity against near copies", fontsize=7)
    ax.set_xlabel("near-copy share vs train (0-1; thin line: its limit)", fontsize=7)
    ax.set_ylabel("FID vs train" + (" (log)" if ax.get_yscale() == "log" else ""), fontsize=7)
    ax.tick_params(labelsize=6.5)
    ax.grid(alpha=0.25)


def _resolution_of(sweep: pd.DataFrame) -> int | None:
    """The image side (px) of a sweep's rows, None where the table does not say."""
    if "resolution" not in sweep or sweep["resolution"].isna().all():
        return None
    return int(sweep["resolution"].dropna().iloc[0])
