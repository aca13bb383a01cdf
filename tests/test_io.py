"""Atomic writes: all or nothing, with ordinary permissions."""

import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from cxrlib.io import write_atomic, write_csv


def test_failed_write_leaves_the_previous_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "table.csv"
    write_csv(pd.DataFrame({"a": [1]}), target)

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_atomic(target, broken)
    assert pd.read_csv(target)["a"].tolist() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_written_files_follow_the_umask_not_mkstemps_0600(tmp_path: Path) -> None:
    target = tmp_path / "x.csv"
    write_csv(pd.DataFrame({"a": [1]}), target)
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
