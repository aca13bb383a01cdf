"""Logging for workflow jobs: one plain-text log file per job, readable in a SLURM log viewer."""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def job_logging(log_path: str | Path | None, level: int = logging.INFO) -> Iterator[None]:
    """Send log records to `log_path` (and warnings and errors to stderr too).

    An exception escaping the block is written to the log before it propagates, so the reason
    a job failed is in its log file, not only in the scheduler's output.
    """
    handlers: list[logging.Handler] = []
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setLevel(logging.WARNING if log_path is not None else level)
    handlers.append(stderr)
    logging.basicConfig(level=level, format=FORMAT, handlers=handlers, force=True)
    try:
        yield
    except Exception as exc:
        logging.getLogger("cxrlib").error("job failed: %s", exc, exc_info=True)
        raise
    finally:
        for handler in handlers:
            handler.flush()


def format_eta(seconds: float) -> str:
    """A remaining time for progress lines: '1h05m', '4m07s', or '?' when unknown (NaN/inf)."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(round(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
