"""Where the study's time went: per-rule runtimes from Snakemake's benchmark files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxrlib.io import write_csv
from cxrlib.plotting import plt, save_figure


def collect_benchmarks(folder: Path) -> pd.DataFrame:
    """One row per job: rule (the file's folder or stem under `folder`), job, seconds, max_rss_mb.

    Layout as the rules write it: `{folder}/{rule}.tsv` for single jobs and
    `{folder}/{rule}/{wildcards}.tsv` for jobs fanned out over wildcards.
    """
    rows = []
    for path in sorted(Path(folder).rglob("*.tsv")):
        relative = path.relative_to(folder)
        rule = relative.parts[0] if len(relative.parts) > 1 else path.stem
        table = pd.read_csv(path, sep="\t")
        if table.empty or "s" not in table:
            continue
        rss = pd.to_numeric(table.get("max_rss", pd.Series([float("nan")])), errors="coerce")
        rows.append(
            {
                "rule": rule,
                "job": path.stem,
                "seconds": float(table["s"].iloc[-1]),
                "max_rss_mb": float(rss.iloc[-1]),
            }
        )
    return pd.DataFrame(rows, columns=["rule", "job", "seconds", "max_rss_mb"])


def runtime_by_rule(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per rule: jobs, total and longest seconds, peak memory; slowest first."""
    table = jobs.groupby("rule").agg(
        jobs=("job", "count"),
        total_s=("seconds", "sum"),
        longest_s=("seconds", "max"),
        peak_rss_mb=("max_rss_mb", "max"),
    )
    return table.sort_values("total_s", ascending=False).reset_index()


def write_runtime_report(
    folder: Path, table_csv: Path, figure_png: Path, *, synthetic: bool = False
) -> pd.DataFrame:
    """The per-rule table and a horizontal bar chart of total seconds per rule."""
    table = runtime_by_rule(collect_benchmarks(folder))
    write_csv(table, table_csv)
    # 0.24 in a rule: the chart of a whole study (~20 rules) stays shorter than a laptop's
    # window in the report
    fig, ax = plt.subplots(figsize=(7, 0.24 * max(len(table), 4) + 1))
    ordered = table.iloc[::-1]
    ax.barh(ordered["rule"], ordered["total_s"], color="steelblue")
    for y, (total, jobs) in enumerate(zip(ordered["total_s"], ordered["jobs"], strict=True)):
        ax.text(total, y, f" {total:.0f} s ({jobs} job{'s' * (jobs > 1)})", va="center", fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlim(0, float(table["total_s"].max()) * 1.35 or 1.0)  # room for the bar labels
    ax.set_xlabel("total runtime of the rule's jobs (s, from results/benchmarks)")
    ax.set_title("where the study's time went")
    save_figure(fig, figure_png, synthetic=synthetic)
    return table
