"""fetch_weights: a verified file appears atomically, or nothing appears and the error says why."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxrlib.metrics.fidelity import WeightsError, file_sha256
from cxrlib.metrics.weights import fetch_weights


def _source(tmp_path: Path) -> Path:
    src = tmp_path / "published.pth"
    src.write_bytes(b"weights" * 1000)
    return src


def test_fetch_verifies_and_writes_the_file(tmp_path: Path) -> None:
    src = _source(tmp_path)
    target = tmp_path / "weights" / "inception.pth"
    digest = fetch_weights(src.as_uri(), target, file_sha256(src)[:8])
    assert target.read_bytes() == src.read_bytes()
    assert digest == file_sha256(src)


def test_wrong_sha256_leaves_no_file(tmp_path: Path) -> None:
    src = _source(tmp_path)
    target = tmp_path / "weights" / "inception.pth"
    with pytest.raises(WeightsError, match="not the published file"):
        fetch_weights(src.as_uri(), target, "00000000")
    assert not target.exists()
    assert not list(target.parent.glob("*")), "a partial or temporary file was left behind"


def test_unreachable_url_names_the_offline_fix(tmp_path: Path) -> None:
    target = tmp_path / "inception.pth"
    with pytest.raises(WeightsError, match=r"metrics\.inception_weights") as info:
        fetch_weights((tmp_path / "missing.pth").as_uri(), target, "6726825d")
    assert "login node" in str(info.value)
    assert not target.exists()
