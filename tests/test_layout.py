"""Finding files in the {split}/{class}/ layout, and the errors for unusable folders."""

from pathlib import Path

import pytest

from cxrlib.data.layout import DataError, find_files


def _touch(path: Path, data: bytes = b"x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _kaggle(root: Path) -> None:
    for split in ("train", "val", "test"):
        for label in ("NORMAL", "PNEUMONIA"):
            _touch(root / split / label / f"{split}-{label}.jpeg")


def test_every_file_is_placed_or_given_a_reason(tmp_path: Path) -> None:
    _kaggle(tmp_path)
    _touch(tmp_path / "train" / "NORMAL" / ".DS_Store")
    _touch(tmp_path / "train" / "loose.jpeg")
    _touch(tmp_path / "README.txt")
    _touch(tmp_path / "__MACOSX" / "train" / "NORMAL" / "._x.jpeg")
    _touch(tmp_path / "test" / "NORMAL" / "nested" / "deep.jpeg")
    layout = find_files(tmp_path)
    assert layout.labels == ("NORMAL", "PNEUMONIA")
    assert layout.splits == ("train", "val", "test")
    placed = [f for f in layout.files if f.problem is None]
    assert len(placed) == 6 and all(f.split and f.label for f in placed)
    problems = {f.path.name: f.problem for f in layout.files if f.problem}
    assert set(problems) == {".DS_Store", "loose.jpeg", "README.txt", "._x.jpeg", "deep.jpeg"}
    assert "system" in problems[".DS_Store"]
    assert "layout" in problems["loose.jpeg"]


def test_unknown_class_folder_in_test_is_listed_not_used(tmp_path: Path) -> None:
    _kaggle(tmp_path)
    _touch(tmp_path / "test" / "COVID" / "a.png")
    layout = find_files(tmp_path)
    (covid,) = [f for f in layout.files if f.path.parent.name == "COVID"]
    assert "COVID" in covid.problem and covid.label is None


def test_missing_root_names_the_path_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as info:
        find_files(tmp_path / "nowhere")
    assert "nowhere" in str(info.value) and "data.root" in str(info.value)


def test_root_one_level_too_high_suggests_the_right_one(tmp_path: Path) -> None:
    _kaggle(tmp_path / "chest_xray" / "chest_xray")
    with pytest.raises(DataError, match="no train/") as info:
        find_files(tmp_path)
    assert str(tmp_path / "chest_xray" / "chest_xray") in str(info.value)


def test_class_missing_from_test_stops_with_its_name(tmp_path: Path) -> None:
    _kaggle(tmp_path)
    for f in (tmp_path / "test" / "PNEUMONIA").iterdir():
        f.unlink()
    (tmp_path / "test" / "PNEUMONIA").rmdir()
    with pytest.raises(DataError, match="PNEUMONIA"):
        find_files(tmp_path)


def test_no_class_folders_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        find_files(tmp_path)
