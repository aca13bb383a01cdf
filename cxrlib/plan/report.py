"""The report: which front page `snakemake --report` shows, and the command that writes the
report when a whole-study run ends (config report.after_run)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cxrlib.plan import paths


def report_text(basedir: str | Path) -> str:
    """The report's front page, relative to the Snakefile's folder (as the `report:`
    directive reads it): the generated one (study text plus headline results) once the
    `headline` rule has written it, else the bare study description."""
    generated = Path(paths.HEADLINE_PAGE).resolve()
    if generated.is_file():
        return os.path.relpath(generated, basedir)
    return "report/workflow.rst"


def generated_report_text() -> Path | None:
    """The front page a run may just have written, or None."""
    generated = Path(paths.HEADLINE_PAGE).resolve()
    return generated if generated.is_file() else None


def report_command(
    snakefile: str | Path,
    configfiles: Sequence[str | Path] = (),
    config_args: Sequence[str] = (),
) -> list[str]:
    """`snakemake --report` with the same config files and --config values as the run."""
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(snakefile),
        "--directory", os.getcwd(), "--nolock", "--report", paths.REPORT,
    ]  # fmt: skip
    if configfiles:
        command += ["--configfile", *map(str, configfiles)]
    if config_args:
        command += ["--config", *config_args]
    return command
