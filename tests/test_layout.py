"""Finding files in the {split}/{class}/ layout, and the errors for unusable folders."""

import os
import shutil
from pathlib import Path

import pytest

from cxrlib.data.layout import DataError, check_root, find_files, printable_path


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


# --------------------------------------------------------------------------- linked folders


def _reachable_names(layout) -> dict[str, str | None]:
    """{path relative to nothing but its last three parts: problem} for every file found."""
    return {"/".join(f.path.parts[-3:]): f.problem for f in layout.files}


def test_linked_val_folder_outside_root_is_read(tmp_path: Path) -> None:
    """The issue's example: val -> ../shared_val with 4 images; all 4 are placed in val."""
    root = tmp_path / "chest_xray"
    _kaggle(root)
    shutil.rmtree(root / "val")
    shared = tmp_path / "shared_val"
    for label in ("NORMAL", "PNEUMONIA"):
        for i in range(2):
            _touch(shared / label / f"shared-{label}-{i}.jpeg")
    (root / "val").symlink_to("../shared_val")
    layout = find_files(root)
    in_val = [f for f in layout.files if f.split == "val" and f.problem is None]
    assert sorted(f.path.name for f in in_val) == [
        "shared-NORMAL-0.jpeg",
        "shared-NORMAL-1.jpeg",
        "shared-PNEUMONIA-0.jpeg",
        "shared-PNEUMONIA-1.jpeg",
    ]
    assert all(f.path.parent.parent == root / "val" for f in in_val)  # paths as seen from root
    assert "val" in layout.splits


def test_linked_class_folder_and_linked_files_are_read(tmp_path: Path) -> None:
    """Another instance: a class folder and single files that are links to shared storage."""
    root = tmp_path / "root"
    _kaggle(root)
    store = tmp_path / "store"
    _touch(store / "normals" / "a.jpeg")
    _touch(store / "normals" / "b.jpeg")
    _touch(store / "one.jpeg")
    _touch(store / "other" / "c.jpeg")
    (root / "train" / "NORMAL" / "linked").symlink_to(store / "other")  # nested: not layout
    (root / "test" / "PNEUMONIA" / "one.jpeg").symlink_to(store / "one.jpeg")
    for f in (root / "train" / "PNEUMONIA").iterdir():
        f.unlink()
    (root / "train" / "PNEUMONIA").rmdir()
    (root / "train" / "PNEUMONIA").symlink_to(store / "normals")
    found = _reachable_names(find_files(root))
    assert found["train/PNEUMONIA/a.jpeg"] is None and found["train/PNEUMONIA/b.jpeg"] is None
    assert found["test/PNEUMONIA/one.jpeg"] is None
    # the nested link is walked too: its files are accounted for (outside the layout)
    assert "layout" in found["NORMAL/linked/c.jpeg"]


def test_loops_second_links_and_broken_links_are_listed_with_their_reason(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _kaggle(root)
    (root / "train" / "NORMAL" / "again").symlink_to("..")  # loop to an ancestor
    (root / "test" / "NORMAL" / "everything").symlink_to("/")  # would walk the whole disk
    (root / "train" / "PNEUMONIA" / "copy").symlink_to(root / "test" / "PNEUMONIA")
    (root / "test" / "NORMAL" / "gone.jpeg").symlink_to(tmp_path / "missing.jpeg")
    (root / "val" / "NORMAL" / "gone").symlink_to(tmp_path / "unmounted")
    layout = find_files(root)
    problems = {"/".join(f.path.parts[-3:]): f.problem for f in layout.files if f.problem}
    assert "link loop" in problems["train/NORMAL/again"]
    assert "link loop" in problems["test/NORMAL/everything"]
    assert "holds itself" in problems["train/PNEUMONIA/copy"]
    assert str(root / "test" / "PNEUMONIA") in problems["train/PNEUMONIA/copy"]
    assert "broken link" in problems["test/NORMAL/gone.jpeg"]
    assert "broken link" in problems["val/NORMAL/gone"]
    assert len([f for f in layout.files if f.problem is None]) == 6  # the real images, once each


def test_inside_only_lists_links_that_leave_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _kaggle(root)
    _touch(tmp_path / "elsewhere" / "x.jpeg")
    (root / "test" / "NORMAL" / "more").symlink_to(tmp_path / "elsewhere")
    (root / "test" / "NORMAL" / "local.jpeg").symlink_to(
        root / "train" / "NORMAL" / "train-NORMAL.jpeg"
    )
    layout = find_files(root, follow_links="inside")
    problems = {f.path.name: f.problem for f in layout.files if f.problem}
    assert "leaves data.root" in problems["more"] and "follow_links" in problems["more"]
    assert "local.jpeg" not in problems
    with pytest.raises(DataError, match="follow_links"):
        find_files(root, follow_links="sometimes")


# --------------------------------------------------------------------------- the root hint


def test_hint_skips_the_macosx_copy_beside_the_real_folder(tmp_path: Path) -> None:
    """The archive's usual archive/chest_xray next to archive/__MACOSX/chest_xray."""
    _kaggle(tmp_path / "__MACOSX" / "chest_xray")
    _kaggle(tmp_path / "chest_xray")
    with pytest.raises(DataError, match="no train/") as info:
        find_files(tmp_path)
    message = str(info.value)
    assert f"exists at {tmp_path / 'chest_xray'}:" in message
    assert "__MACOSX" not in message


def test_hint_skips_hidden_and_system_copies_and_names_every_candidate(tmp_path: Path) -> None:
    _kaggle(tmp_path / ".Trash" / "chest_xray")
    _kaggle(tmp_path / "$RECYCLE.BIN" / "chest_xray")
    _kaggle(tmp_path / "v2" / "chest_xray")
    _kaggle(tmp_path / "v1" / "chest_xray")
    with pytest.raises(DataError) as info:
        find_files(tmp_path)
    message = str(info.value)
    assert f"{tmp_path / 'v1' / 'chest_xray'}; {tmp_path / 'v2' / 'chest_xray'}" in message
    assert "2 folders" in message and "Trash" not in message and "RECYCLE" not in message


def test_links_to_folders_the_root_holds_never_replace_them(tmp_path: Path) -> None:
    """A link that sorts before the real folder must not take its place (nor its images)."""
    root = tmp_path / "root"
    _kaggle(root)
    (root / "all_train").symlink_to("train")  # sorts before train/
    (root / "test" / "NORMAL" / "see_also").symlink_to(root / "train" / "NORMAL")
    layout = find_files(root)
    placed = {"/".join(f.path.parts[-3:]) for f in layout.files if f.problem is None}
    assert "train/NORMAL/train-NORMAL.jpeg" in placed
    assert "train/PNEUMONIA/train-PNEUMONIA.jpeg" in placed
    problems = {f.path.name: f.problem for f in layout.files if f.problem}
    assert "holds itself" in problems["all_train"] and "holds itself" in problems["see_also"]


def test_two_links_to_one_outside_folder_count_it_once(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _kaggle(root)
    _touch(tmp_path / "extra" / "x.jpeg")
    (root / "train" / "NORMAL" / "a").symlink_to(tmp_path / "extra")
    (root / "train" / "NORMAL" / "b").symlink_to(tmp_path / "extra")
    problems = {f.path.name: f.problem for f in find_files(root).files if f.problem}
    assert "already read as" in problems["b"] and "x.jpeg" in problems


def test_odd_entries_are_listed_not_opened(tmp_path: Path) -> None:
    """Pipes and devices would block a read; link cycles and non-UTF-8 names have reasons."""
    root = tmp_path / "root"
    _kaggle(root)
    normal = root / "train" / "NORMAL"
    os.mkfifo(normal / "pipe.jpeg")
    (normal / "zero.dcm").symlink_to("/dev/zero")
    (normal / "a.jpeg").symlink_to("b.jpeg")
    (normal / "b.jpeg").symlink_to("a.jpeg")
    os.close(os.open(os.fsencode(normal) + b"/caf\xe9.jpeg", os.O_CREAT | os.O_WRONLY))
    problems = {f.path.name: f.problem for f in find_files(root).files if f.problem}
    assert "not a regular file" in problems["pipe.jpeg"]
    assert "not a regular file" in problems["zero.dcm"]
    assert "link loop" in problems["a.jpeg"] and "link loop" in problems["b.jpeg"]
    (bad,) = [name for name in problems if not name.isascii()]
    assert "UTF-8" in problems[bad] and printable_path(normal / bad).endswith("caf\\xe9.jpeg")


def test_unreadable_split_folder_is_a_data_error(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _kaggle(root)
    real_iterdir = Path.iterdir

    def denied(self):  # root ignores chmod, so the refusal is simulated at the call
        if self == root / "test":
            raise PermissionError(13, "Permission denied")
        return real_iterdir(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Path, "iterdir", denied)
        with pytest.raises(DataError, match=r"cannot read .*test.*Permission denied.*chmod"):
            find_files(root)


@pytest.mark.parametrize(
    ("folders", "expected"),
    [
        (("normal", "pneumonia"), "rename .*train/normal .* or set data.synthetic_class: normal"),
        (("healthy", "sick"), "its classes: healthy, sick.*set data.synthetic_class to"),
    ],
)
def test_synthetic_class_without_a_train_folder_is_named_at_dag_build(
    tmp_path: Path, folders: tuple[str, str], expected: str
) -> None:
    for split in ("train", "test"):
        for name in folders:
            (tmp_path / split / name).mkdir(parents=True)
    (tmp_path / "train" / ".cache").mkdir()  # hidden folders are never classes
    check_root(tmp_path)  # the split layout alone is fine
    with pytest.raises(DataError, match=expected):
        check_root(tmp_path, "NORMAL")
    check_root(tmp_path, folders[0])
