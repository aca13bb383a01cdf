"""Finding the files of a data set laid out as {split}/{class}/<image>.

The Kaggle "Chest X-Ray Images (Pneumonia)" release (and our phantoms) use
`train|val|test/NORMAL|PNEUMONIA/`. Every file under the root is accounted for: a file outside
that layout is listed as rejected with a reason, never skipped silently. Problems that make the
whole data set unusable (missing root, missing split, a class missing from a split) raise
`DataError` with the path and the fix.
"""

from __future__ import annotations

import errno
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

REQUIRED_SPLITS: tuple[str, ...] = ("train", "test")
OPTIONAL_SPLITS: tuple[str, ...] = ("val",)
# Files that operating systems and archivers leave behind; listed as rejected like any other stray.
SYSTEM_FILE_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
# Snakemake's own marker in a directory() output (the generated phantom folder): not data.
WORKFLOW_MARKERS = frozenset({".snakemake_timestamp"})
# The note the phantom generator writes at the root of its data set (cxrlib.data.phantom): the
# workflow's own file, not data, so neither an image nor a rejected file. Only at the root.
PHANTOM_NOTE = "PHANTOM_README.txt"


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
    root: Path = Path()  # the data.root that was walked


# Folders that operating systems, archivers and file managers create; never data, never a root.
SYSTEM_FOLDER_NAMES = frozenset(
    {"__MACOSX", "$RECYCLE.BIN", "System Volume Information", "lost+found", "@eaDir"}
)
# How deep below data.root the "one level too high" hint looks for the real root.
_HINT_DEPTH = 4
FOLLOW_LINKS = ("anywhere", "inside")  # data.follow_links: follow every link, or only within root


def _is_hidden(name: str) -> bool:
    """Hidden (dot), archiver (__MACOSX) and system folder or file names: walked, never used."""
    return name.startswith(".") or name.startswith("__MACOSX") or name in SYSTEM_FOLDER_NAMES


def _hint_for_nested_root(root: Path) -> str:
    """Name the folder(s) below `root` that have the layout, when the archive sat one level deeper.

    Skips what the walk skips (hidden, ``__MACOSX``, system folders), follows linked folders
    like the walk, looks at most `_HINT_DEPTH` levels down, and is deterministic: the shallowest
    candidate first, ties by path. Several candidates are all named.
    """
    candidates: list[tuple[int, str]] = []
    seen: set[str] = set()

    def visit(folder: Path, depth: int) -> None:
        real = os.path.realpath(folder)
        if real in seen or depth > _HINT_DEPTH:
            return
        seen.add(real)
        if depth > 0 and all((folder / s).is_dir() for s in REQUIRED_SPLITS):
            candidates.append((depth, str(folder)))
            return
        try:
            children = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        for entry in children:
            if not _is_hidden(entry.name) and entry.is_dir():
                visit(Path(entry.path), depth + 1)

    visit(root, 0)
    if not candidates:
        return ""
    candidates.sort()
    if len(candidates) == 1:
        return f" A folder with that layout exists at {candidates[0][1]}: set data.root to it."
    names = "; ".join(path for _, path in candidates)
    return (
        f" {len(candidates)} folders below it have that layout: {names}. Set data.root to the "
        "one that holds the data set you mean."
    )


@dataclass(frozen=True)
class _Walked:
    """A file found by the walk: its path under root and the folder names leading to it."""

    path: Path
    rel: tuple[str, ...]
    problem: str | None = None  # set for links the walk refused (loop, broken, leaves root)


def _walk(root: Path, follow_links: str) -> list[_Walked]:
    """Every file reachable from `root`, in sorted order, following linked folders.

    Each real folder is entered once, and by its own path when `root` holds it: a link to a
    folder inside `root` (``all_train -> train``, ``test/NORMAL -> ../train/NORMAL``) would read
    its images twice, or under the wrong split or class, so the link is listed and the folder
    read where it is. A link back to one of its own ancestors is a loop; a second link to a
    folder outside `root` already walked counts as a duplicate; broken links, names that are not
    UTF-8, and pipes or devices are listed too, and with ``follow_links="inside"`` so are links
    whose target lies outside `root`.
    """
    if follow_links not in FOLLOW_LINKS:
        raise DataError(
            f"data.follow_links must be one of {', '.join(FOLLOW_LINKS)}, got {follow_links!r}"
        )
    real_root = os.path.realpath(root)
    entered: dict[str, Path] = {}
    found: list[_Walked] = []
    # Folders `root` holds itself (reached without following a link), by real path.
    owned = {os.path.realpath(d): Path(d) for d, _, _ in os.walk(root)}

    def inside_root(real: str) -> bool:
        return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)

    def visit(folder: Path, rel: tuple[str, ...]) -> None:
        real = os.path.realpath(folder)
        entered[real] = folder
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            found.append(_Walked(folder, rel, f"cannot list this folder ({exc.strerror or exc})"))
            return
        for entry in entries:
            path = Path(entry.path)
            if entry.name in WORKFLOW_MARKERS or (not rel and entry.name == PHANTOM_NOTE):
                continue
            problem = None
            if not _is_utf8(entry.name):
                problem = (
                    "the name is not valid UTF-8 (an archive from another system?); rename it, "
                    "e.g. with convmv -f latin1 -t utf8"
                )
            elif entry.is_symlink():
                problem = _link_problem(path, follow_links, inside_root(os.path.realpath(path)))
            if problem is None and not entry.is_dir() and not entry.is_file():
                problem = "not a regular file (a named pipe, device or socket); remove it"
            if problem is not None:
                found.append(_Walked(path, (*rel, entry.name), problem))
                continue
            if not entry.is_dir():  # follows a file link; the reader opens its target
                found.append(_Walked(path, rel))
                continue
            target = os.path.realpath(path)
            if (
                entry.is_symlink()
                and target in owned
                and not (real == target or real.startswith(target.rstrip(os.sep) + os.sep))
            ):
                found.append(
                    _Walked(
                        path,
                        (*rel, entry.name),
                        f"link to {owned[target]}, which data.root holds itself: its images "
                        "are read there, once; remove the link",
                    )
                )
            elif real == target or real.startswith(target.rstrip(os.sep) + os.sep):
                found.append(
                    _Walked(
                        path,
                        (*rel, entry.name),
                        f"link loop: it points to {target}, which holds this folder (the walk "
                        "would never end); remove the link",
                    )
                )
            elif target in entered:
                found.append(
                    _Walked(
                        path,
                        (*rel, entry.name),
                        f"folder already read as {entered[target]} (a second link to the same "
                        "images would count them twice); remove one of the two",
                    )
                )
            else:
                visit(path, (*rel, entry.name))

    visit(root, ())
    return found


def tree_signature(root: Path, follow_links: str = "anywhere") -> str:
    """A hash of every path reachable from `root` with its size and modification time.

    Snakemake compares only the mtime of the data.root folder itself, which does not change
    when a file in train/NORMAL/ is replaced; the prepare_data rule takes this as a parameter
    instead, so adding, removing or re-downloading any file (or relinking a folder) reruns it.
    Costs one stat per file (about 0.1 s for the 5,856 Kaggle images on a local disk).
    """
    digest = hashlib.sha256()
    for walked in _walk(Path(root), follow_links):
        try:
            info = walked.path.stat()
            entry = f"{walked.path}\0{info.st_size}\0{info.st_mtime_ns}\n"
        except OSError:
            entry = f"{walked.path}\0-\n"  # a broken link: its presence still counts
        digest.update(entry.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:16]


def _is_utf8(name: str) -> bool:
    """False for names holding bytes that are not UTF-8 (Python keeps them as surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable_path(path: Path | str) -> str:
    """`path` as text any CSV can hold: undecodable name bytes written as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _link_problem(path: Path, follow_links: str, inside: bool) -> str | None:
    """Why the symbolic link `path` is not followed, or None when it is."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "link loop: the links point at each other (or at themselves); remove them"
    if not path.exists():
        return (
            f"broken link: its target {os.readlink(path)} does not exist; fix the link or "
            "mount the storage it points to"
        )
    if follow_links == "inside" and not inside:
        return (
            f"link leaves data.root (to {os.path.realpath(path)}); set data.follow_links: "
            "anywhere to read it, or copy it into data.root"
        )
    return None


def check_root(root: Path, synthetic_class: str | None = None) -> None:
    """Raise `DataError` unless `root` is a folder holding train/ and test/.

    Cheap (a few stat calls when all is well), so the DAG build runs it before any job; when
    the splits are missing, the message names the folder(s) below `root` that have them. With
    `synthetic_class` (data.synthetic_class), train/ must also hold a folder of that name
    (class names are case-sensitive: `train/normal` is not NORMAL).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"data.root {root} does not exist or is not a folder. Download the Kaggle 'Chest X-Ray "
            "Images (Pneumonia)' release and set data.root to the folder that holds train/ and "
            "test/ (docs/configuration.md, 'Real data'), or run the demo with data.source: phantom."
        )
    missing = [s for s in REQUIRED_SPLITS if not (root / s).is_dir()]
    if missing:
        raise DataError(
            f"data.root {root} has no {' or '.join(m + '/' for m in missing)} folder; expected "
            "train/<class>/, test/<class>/ and optionally val/<class>/."
            + _hint_for_nested_root(root)
        )
    if synthetic_class is not None and not (root / "train" / synthetic_class).is_dir():
        classes = sorted(
            p.name for p in _subfolders(root / "train") if p.is_dir() and not _is_hidden(p.name)
        )
        same = [c for c in classes if c.casefold() == synthetic_class.casefold()]
        fix = (
            f"rename {root / 'train' / same[0]} (and the same folder in the other splits) to "
            f"{synthetic_class}, or set data.synthetic_class: {same[0]}"
            if same
            else "set data.synthetic_class to the class the GANs should learn"
        )
        raise DataError(
            f"data.synthetic_class {synthetic_class!r} has no folder in {root / 'train'} "
            f"(its classes: {', '.join(classes) or 'none'}); class names are case-sensitive: "
            f"{fix}."
        )


def train_classes(root: Path) -> list[str]:
    """The class folders of `root`/train/, sorted (hidden folders left out): the study's
    classes (every other split must have the same ones: `find_files`)."""
    return sorted(
        p.name for p in _subfolders(Path(root) / "train") if p.is_dir() and not _is_hidden(p.name)
    )


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError as exc:
        raise DataError(
            f"cannot read {folder} ({exc.strerror or exc}); make it readable for this user "
            f"(chmod -R u+rX {folder}) or copy the data somewhere readable"
        ) from None


def find_files(root: Path, follow_links: str = "anywhere") -> Layout:
    """Walk `root` and place every file in the split/class layout.

    Class names are the sub-folders of `train/`; every other split must have the same classes,
    so a model is never evaluated on a class it never saw (or vice versa). Linked folders and
    files are followed (``follow_links="anywhere"``, for shared storage and re-used validation
    sets) or only within `root` (``"inside"``); loops, second links to a folder already read and
    broken links come back as files with a `problem`, so every path reachable from `root` is
    accounted for.
    """
    root = Path(root)
    check_root(root)
    splits = tuple(
        s
        for s in (*REQUIRED_SPLITS[:1], *OPTIONAL_SPLITS, *REQUIRED_SPLITS[1:])
        if (root / s).is_dir()
    )
    labels = tuple(
        sorted(p.name for p in _subfolders(root / "train") if p.is_dir() and not _is_hidden(p.name))
    )
    if not labels:
        raise DataError(
            f"{root / 'train'} has no class folders; put images in train/<class>/, e.g. "
            "train/NORMAL/ and train/PNEUMONIA/."
        )
    for split in splits:
        present = {
            p.name for p in _subfolders(root / split) if p.is_dir() and not _is_hidden(p.name)
        }
        if split != "val" and set(labels) - present:
            absent = ", ".join(sorted(set(labels) - present))
            raise DataError(
                f"{root / split} has no folder for class {absent} "
                f"(train/ has {', '.join(labels)}); every split needs the same class folders."
            )
    files = [
        FoundFile(w.path, None, None, w.problem)
        if w.problem is not None
        else _place(w.path, w.rel, w.path.name, splits, labels)
        for w in _walk(root, follow_links)
    ]
    return Layout(files=tuple(files), labels=labels, splits=splits, root=root)


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
