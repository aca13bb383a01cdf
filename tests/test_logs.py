"""Progress-line helpers: remaining times that read well in a SLURM log."""

from __future__ import annotations

import math

import pytest

from cxrlib.logs import format_eta


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0m00s"), (59.6, "1m00s"), (247, "4m07s"), (3600, "1h00m"), (3900, "1h05m"),
     (-3, "0m00s"), (math.nan, "?"), (math.inf, "?")],
)  # fmt: skip
def test_format_eta(seconds: float, text: str) -> None:
    assert format_eta(seconds) == text
