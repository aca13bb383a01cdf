"""Finding the files of a data set laid out as {split}/{class}/<image>.

The Kaggle "Chest X-Ray Images (Pneumonia)" release (and our phantoms) use
`train|val|test/NORMAL|PNEUMONIA/`. Every file under the root is accounted for: a file outside
that layout is listed as rejected with a reason, never skipped silently. Problems that make the
whole data set unusable (missing root, missing split, a class missing from a split) raise
`DataError` with the path and the fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REQUIRED_SPLITS: tuple[str, ...] = ("train", "test")
OPTIONAL_SPLITS: tuple[str, ...] = ("val",)
# Files that operating systems and archivers leave behind; listed as rejected like any other stray.
SYSTEM_FILE_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
# Snakemake's own marker in a directory() output (the generated phantom folder): not data.
WORKFLOW_MARKERS = frozenset({".snakemake_timestamp"})


class DataError(Exception):
    """The data folder as a whole cannot be used; the message names the path and the fix."""


@dataclass(frozen=True)
class FoundFile:
    """One file under the data root: where it sits in the layout, or why it does not fit."""

    path: Path
    split: str | None  # the split folder it was found in (train/val/test), None outside them
    label: str | None  # the class folder it was found in, None outside one
    problem: str | None = None  # set when the file is outside the layout


@dataclass(frozen=True)
class Layout:
    """All files found, the class names (sorted) and the splits present."""

    files: tuple[FoundFile, ...]
    labels: tuple[str, ...]
    splits: tuple[str, ...]


def _hint_for_nested_root(root: Path) -> str:
    """Suggest the right root when the archive was unpacked one level deeper (a common slip)."""
    for candidate in sorted(p for p in root.rglob("train") if p.is_dir()):
        parent = candidate.parent
        if all((parent / s).is_dir() for s in REQUIRED_SPLITS):
            return f" A folder with that layout exists at {parent}: set data.root to it."
    return ""


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("__MACOSX")


def find_files(root: Path) -> Layout:
    """Walk `root` and place every file in the split/class layout.

    Class names are the sub-folders of `train/`; every other split must have the same classes,
    so a model is never evaluated on a class it never saw (or vice versa).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"data.root {root} does not exist or is not a folder. Download the Kaggle 'Chest X-Ray "
            "Images (Pneumonia)' release and set data.root to the folder that holds train/ and "
            "test/ (see README, 'Real data'), or run the demo with data.source: phantom."
        )
    missing = [s for s in REQUIRED_SPLITS if not (root / s).is_dir()]
    if missing:
        raise DataError(
            f"data.root {root} has no {' or '.join(m + '/' for m in missing)} folder; expected "
            "train/<class>/, test/<class>/ and optionally val/<class>/."
            + _hint_for_nested_root(root)
        )
    splits = tuple(
        s
        for s in (*REQUIRED_SPLITS[:1], *OPTIONAL_SPLITS, *REQUIRED_SPLITS[1:])
        if (root / s).is_dir()
    )
    labels = tuple(
        sorted(p.name for p in (root / "train").iterdir() if p.is_dir() and not _is_hidden(p.name))
    )
    if not labels:
        raise DataError(
            f"{root / 'train'} has no class folders; put images in train/<class>/, e.g. "
            "train/NORMAL/ and train/PNEUMONIA/."
        )
    for split in splits:
        present = {
            p.name for p in (root / split).iterdir() if p.is_dir() and not _is_hidden(p.name)
        }
        if split != "val" and set(labels) - present:
            absent = ", ".join(sorted(set(labels) - present))
            raise DataError(
                f"{root / split} has no folder for class {absent} "
                f"(train/ has {', '.join(labels)}); every split needs the same class folders."
            )
    files: list[FoundFile] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = Path(dirpath).relative_to(root).parts
        for name in sorted(set(filenames) - WORKFLOW_MARKERS):
            path = Path(dirpath) / name
            files.append(_place(path, rel, name, splits, labels))
    return Layout(files=tuple(files), labels=labels, splits=splits)


def _place(
    path: Path, rel: tuple[str, ...], name: str, splits: tuple[str, ...], labels: tuple[str, ...]
) -> FoundFile:
    """Decide where one file sits, or why it is outside the layout."""
    if name in SYSTEM_FILE_NAMES or any(_is_hidden(part) for part in (*rel, name)):
        return FoundFile(path, None, None, "hidden or system file, not an image")
    if len(rel) == 2 and rel[0] in splits:
        if rel[1] in labels:
            return FoundFile(path, rel[0], rel[1])
        return FoundFile(
            path,
            rel[0],
            None,
            f"class folder {rel[1]!r} is not among train/'s classes ({', '.join(labels)}); "
            "rename or move it",
        )
    return FoundFile(
        path,
        rel[0] if rel and rel[0] in splits else None,
        None,
        "outside the {split}/{class}/ layout; move it into a class folder if it is an image",
    )
