"""Prepare a CXR data set: read and check every file once, split by patient, write outputs.

One pass over the files does everything that needs the pixels (decode, hash, histogram,
normalise, resize) in a process pool; the decisions that need the whole set (duplicates,
validation carve, patient collisions) run afterwards on the small metadata table, and only the
prepared 256 px images travel back to the parent. Outputs:

- `manifest.csv`: one row per accepted image (source path, split, label, patient, sha256 of the
  decoded pixels, original size/mode/format/bit depth, prepared PNG path, index in the cache);
- `rejected.csv`: one row per file not used (path, reason);
- `prepared/{split}/{label}/*.png` and `cache/{split}.npz` (all images of a split in one array);
- `class_counts.csv`, `patient_collisions.csv`, `intensity_histograms.csv` for the data QC.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxrlib.data.layout import DataError, FoundFile, Layout, find_files, printable_path
from cxrlib.data.patients import DEFAULT_PATIENT_ID_PATTERNS, PatientIdParser
from cxrlib.data.preprocess import PreprocessSettings, preprocess_pixels
from cxrlib.data.readers import ImageRejected, pixel_sha256, read_image
from cxrlib.data.splits import REJECTED_COLUMNS, assign_splits
from cxrlib.io import write_csv, write_npz

log = logging.getLogger(__name__)
_STAGING = ".staging"  # inside prepared/, removed before the job ends

MANIFEST_COLUMNS: list[str] = [
    "path",
    "split",
    "label",
    "patient_id",
    "patient_id_source",
    "sha256",
    "width",
    "height",
    "mode",
    "format",
    "bit_depth",
    "decode_scale",
    "trailing_bytes",
    "source_split",
    "source",
    "prepared_path",
    "cache_index",
]


@dataclass(frozen=True)
class DataSettings:
    """How files are checked and split (config section `data`)."""

    val_source: str = "carve"  # carve val from train by patient, or use the given val/ folder
    val_fraction: float = 0.1  # share of training images (whole patients) moved to validation
    split_seed: int = 0  # seed of the validation carve
    patient_id_patterns: tuple[str, ...] = DEFAULT_PATIENT_ID_PATTERNS  # regexes with (?P<pid>)
    min_side_px: int = 64  # images smaller than this on either side are rejected
    min_train_images_per_class: int = 10  # fewer usable training images per class stops the run
    min_eval_images_per_class: int = 1  # same for validation and test
    test_id_collisions: str = "report"  # "report" or "exclude_from_train"
    source: str = "folder"  # where the data came from ("folder" or "phantom"), kept in the manifest
    follow_links: str = "anywhere"  # linked folders/files: followed anywhere, or only "inside" root


@dataclass(frozen=True)
class PrepareOutputs:
    """Where `prepare_dataset` writes; the Snakemake rule declares the same paths."""

    manifest: Path
    rejected: Path
    class_counts: Path
    collisions: Path
    histograms: Path
    prepared_dir: Path
    cache_dir: Path
    # A copy of rejected.csv beside the job's log: Snakemake deletes a failed job's outputs but
    # keeps its logs, so the reasons survive an early stop (None: only `rejected`).
    rejected_log: Path | None = None

    @classmethod
    def under(cls, folder: Path) -> PrepareOutputs:
        folder = Path(folder)
        return cls(
            manifest=folder / "manifest.csv",
            rejected=folder / "rejected.csv",
            class_counts=folder / "class_counts.csv",
            collisions=folder / "patient_collisions.csv",
            histograms=folder / "qc" / "intensity_histograms.csv",
            prepared_dir=folder / "prepared",
            cache_dir=folder / "cache",
        )


@dataclass
class _Decoded:
    """What a worker sends back for an accepted file (a few hundred bytes + the small image)."""

    index: int
    sha256: str
    width: int
    height: int
    mode: str
    format: str
    bit_depth: int
    decode_scale: float
    trailing_bytes: int
    image: np.ndarray
    hist_before: np.ndarray
    hist_after: np.ndarray


@dataclass
class _Collected:
    decoded: list[_Decoded] = field(default_factory=list)
    rejected_paths: list[str] = field(default_factory=list)
    rejected_reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Job:
    """What every worker needs, sent once per process by the pool initialiser."""

    min_side_px: int
    settings: PreprocessSettings
    staging: Path  # workers write prepared PNGs here as <index>.png; the parent renames them


_JOB: list[_Job] = []  # the worker's _Job (a list so the initialiser can set it)


def _init_worker(job: _Job) -> None:
    _JOB[:] = [job]


def _process(task: tuple[int, str]) -> _Decoded | tuple[int, str]:
    """Decode, hash, prepare and stage one file; a rejection comes back as (index, reason)."""
    index, path = task
    job = _JOB[0]
    try:
        decoded = read_image(
            Path(path), min_side_px=job.min_side_px, draft_min_side=job.settings.draft_min_side
        )
    except ImageRejected as exc:
        return index, exc.reason
    prepared = preprocess_pixels(decoded.pixels, job.settings)
    # Written by the worker, in parallel; zlib level 1: the smooth radiographs compress
    # within ~5% of level 6's size at a quarter of its time (benchmarks/README.md)
    Image.fromarray(prepared.image).save(job.staging / f"{index}.png", compress_level=1)
    return _Decoded(
        index=index,
        sha256=pixel_sha256(decoded.pixels),
        width=decoded.width,
        height=decoded.height,
        mode=decoded.mode,
        format=decoded.format,
        bit_depth=decoded.bit_depth,
        decode_scale=decoded.decode_scale,
        trailing_bytes=decoded.trailing_bytes,
        image=prepared.image,
        hist_before=prepared.hist_before,
        hist_after=prepared.hist_after,
    )


def _run_tasks(
    tasks: Sequence[tuple[int, str]], threads: int, job: _Job
) -> Iterator[_Decoded | tuple[int, str]]:
    """Process tasks in order, in `threads` worker processes (inline when 1)."""
    if threads <= 1 or len(tasks) < 2:
        _init_worker(job)
        yield from map(_process, tasks)
        return
    chunk = max(1, min(16, len(tasks) // (threads * 8)))
    with ProcessPoolExecutor(
        max_workers=threads, initializer=_init_worker, initargs=(job,)
    ) as pool:
        yield from pool.map(_process, tasks, chunksize=chunk)


def _decode_all(files: Sequence[FoundFile], threads: int, job: _Job) -> _Collected:
    collected = _Collected()
    tasks = []
    for i, found in enumerate(files):
        if found.problem is not None:
            collected.rejected_paths.append(str(found.path))
            collected.rejected_reasons.append(found.problem)
        else:
            tasks.append((i, str(found.path)))
    start = time.monotonic()
    report_every = max(1, len(tasks) // 10)
    for n, result in enumerate(_run_tasks(tasks, threads, job), start=1):
        if isinstance(result, _Decoded):
            collected.decoded.append(result)
        else:
            collected.rejected_paths.append(str(files[result[0]].path))
            collected.rejected_reasons.append(result[1])
        if n % report_every == 0 or n == len(tasks):
            rate = n / max(time.monotonic() - start, 1e-9)
            log.info("read %d/%d files (%.1f images/s)", n, len(tasks), rate)
    return collected


def _unique_png_name(stem: str, taken: set[str]) -> str:
    name = f"{stem}.png"
    n = 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}.png"
    taken.add(name)
    return name


def _write_rejected(rejected: pd.DataFrame, outputs: PrepareOutputs) -> None:
    """Log and write the rejected list (sorted by path) to rejected.csv and its log copy.

    Paths whose names are not UTF-8 are written with \\xNN escapes, so the CSV can hold them.
    """
    rejected = rejected.assign(path=rejected["path"].map(printable_path))
    rejected = rejected.sort_values("path", kind="stable")
    for row in rejected.itertuples():
        log.info("rejected %s: %s", row.path, row.reason)
    if not rejected.empty:
        log.warning(
            "%d file%s rejected (reasons and paths in this job's log and rejected.csv)",
            len(rejected), "" if len(rejected) == 1 else "s",
        )  # fmt: skip
    for target in (outputs.rejected, outputs.rejected_log):
        if target is not None:
            write_csv(rejected, target)


def _where_rejected(outputs: PrepareOutputs) -> str:
    where = outputs.rejected_log or outputs.rejected
    return f"The files not used and why: {where}."


_DIGITS = re.compile(r"\d+")


def _common_reasons(rejected: pd.DataFrame, top: int = 3) -> str:
    """The most frequent rejection reasons with their counts, as one sentence (or "")."""
    if rejected.empty:
        return ""
    # Reasons that differ only in numbers ("(12 bytes not processed)", "(40 bytes ...)") are
    # one kind of fault: counted together, shown with N where they differ.
    reasons = rejected["reason"].astype(str)
    kinds = reasons.map(lambda reason: _DIGITS.sub("N", reason))
    counts = kinds.value_counts().head(top)
    shown = []
    for kind, n in counts.items():
        variants = reasons[kinds == kind].unique()
        shown.append(f"{n} x '{variants[0] if len(variants) == 1 else kind}'")
    return f"Most frequent reasons: {'; '.join(shown)}. "


def _check_counts(images: pd.DataFrame, labels: Sequence[str], data: DataSettings) -> None:
    problems = []
    for split in ("train", "val", "test"):
        minimum = (
            data.min_train_images_per_class if split == "train" else data.min_eval_images_per_class
        )
        for label in labels:
            n = int(((images["split"] == split) & (images["label"] == label)).sum())
            if n < minimum:
                problems.append(f"{split}/{label}: {n} usable images (need at least {minimum})")
    if problems:
        raise DataError(
            "too little usable data after checks: " + "; ".join(problems) + ". See the rejected "
            "files listed in this log for why files were not used; add images, fix the rejected "
            "files, or lower data.min_train_images_per_class / data.min_eval_images_per_class "
            "(validation: raise data.val_fraction)."
        )


def _histogram_table(collected: _Collected, labels_by_index: dict[int, str]) -> pd.DataFrame:
    rows = []
    for label in sorted(set(labels_by_index.values())):
        picked = [d for d in collected.decoded if labels_by_index.get(d.index) == label]
        for stage, attr in (("before", "hist_before"), ("after", "hist_after")):
            total = np.sum([getattr(d, attr) for d in picked], axis=0) if picked else np.zeros(256)
            rows.extend(
                {"label": label, "stage": stage, "level": level, "count": int(c)}
                for level, c in enumerate(total)
            )
    return pd.DataFrame(rows, columns=["label", "stage", "level", "count"])


def prepare_dataset(
    root: Path,
    outputs: PrepareOutputs,
    data: DataSettings,
    pre: PreprocessSettings,
    threads: int = 1,
) -> pd.DataFrame:
    """Prepare the data set under `root` and write every output; return the manifest.

    Raises `DataError` (after logging every rejected file) when the layout is unusable or too
    little data is left. Every stop leaves the rejected list behind first (`outputs.rejected`
    and `outputs.rejected_log`), so the reasons (e.g. which DICOM decoder to install) are there
    to read; the error names where.
    """
    try:
        layout = find_files(Path(root), data.follow_links)
    except DataError:
        _write_rejected(pd.DataFrame(columns=REJECTED_COLUMNS), outputs)  # no file was read
        raise
    log.info(
        "found %d files under %s (splits: %s; classes: %s)",
        len(layout.files),
        root,
        ", ".join(layout.splits),
        ", ".join(layout.labels),
    )
    parse_pid = PatientIdParser(data.patient_id_patterns)
    staging = outputs.prepared_dir / _STAGING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        return _prepare(layout, parse_pid, outputs, data, pre, threads, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _prepare(
    layout: Layout,
    parse_pid: PatientIdParser,
    outputs: PrepareOutputs,
    data: DataSettings,
    pre: PreprocessSettings,
    threads: int,
    staging: Path,
) -> pd.DataFrame:
    """prepare_dataset after the layout is known; prepared PNGs are staged in `staging`."""
    collected = _decode_all(layout.files, threads, _Job(data.min_side_px, pre, staging))

    by_index = {d.index: d for d in collected.decoded}
    rows = []
    for d in collected.decoded:
        found = layout.files[d.index]
        pid = parse_pid(found.path)
        rows.append(
            {
                "path": str(found.path),
                "source_split": found.split,
                "label": found.label,
                "patient_id": pid.value,
                "patient_id_source": pid.source,
                "sha256": d.sha256,
                "width": d.width,
                "height": d.height,
                "mode": d.mode,
                "format": d.format,
                "bit_depth": d.bit_depth,
                "decode_scale": d.decode_scale,
                "trailing_bytes": d.trailing_bytes,
                "source": data.source,
                "_index": d.index,
            }
        )
    accepted = pd.DataFrame(rows)
    unplaced = pd.DataFrame(
        {"path": collected.rejected_paths, "reason": collected.rejected_reasons},
        columns=REJECTED_COLUMNS,
    )
    if accepted.empty:
        _write_rejected(unplaced, outputs)
        raise DataError(
            f"too little usable data after checks: none of the {len(layout.files)} files under "
            f"{layout.root} could be used. {_common_reasons(unplaced)}Fix or replace the "
            "files, or set data.root to the folder that holds the images. "
            f"{_where_rejected(outputs)}"
        )
    split = assign_splits(
        accepted,
        val_source=data.val_source,
        val_fraction=data.val_fraction,
        seed=data.split_seed,
        test_id_collisions=data.test_id_collisions,
    )
    rejected = pd.concat([unplaced, split.rejected], ignore_index=True)
    _write_rejected(rejected, outputs)
    try:
        _check_counts(split.images, layout.labels, data)
    except DataError as exc:
        raise DataError(f"{exc} {_common_reasons(rejected)}{_where_rejected(outputs)}") from None

    manifest = _write_images(split.images, by_index, layout.labels, outputs)
    write_csv(manifest[MANIFEST_COLUMNS], outputs.manifest)
    write_csv(split.collisions, outputs.collisions)
    counts = (
        manifest.groupby(["split", "label"])
        .agg(n_images=("path", "size"), n_patients=("patient_id", "nunique"))
        .reset_index()
    )
    write_csv(counts, outputs.class_counts)
    labels_by_index = dict(zip(manifest["_index"], manifest["label"], strict=True))
    write_csv(_histogram_table(collected, labels_by_index), outputs.histograms)
    if not split.collisions.empty:
        log.warning(
            "%d patient IDs occur in more than one split (see %s); the test split is kept as given",
            split.collisions["patient_id"].nunique(),
            outputs.collisions,
        )
    log.info(
        "accepted %d images, rejected %d files; %s",
        len(manifest),
        len(rejected),
        ", ".join(f"{r.split}/{r.label}={r.n_images}" for r in counts.itertuples()),
    )
    return manifest[MANIFEST_COLUMNS]


def _write_images(
    images: pd.DataFrame,
    by_index: dict[int, _Decoded],
    labels: Sequence[str],
    outputs: PrepareOutputs,
) -> pd.DataFrame:
    """Write prepared PNGs and one cache per split; add prepared_path and cache_index."""
    images = images.sort_values(["split", "label", "path"], kind="stable").reset_index(drop=True)
    prepared_path = [""] * len(images)
    cache_index = np.full(len(images), -1, dtype=np.int64)
    label_to_int = {label: i for i, label in enumerate(labels)}
    staging = outputs.prepared_dir / _STAGING
    for split_name, group in images.groupby("split", sort=True):
        taken: dict[str, set[str]] = {}
        folders: dict[str, Path] = {}
        stack = np.stack([by_index[i].image for i in group["_index"]])
        rows = zip(group.index, group["path"], group["label"], group["_index"], strict=True)
        for pos, (idx, path, label, index) in enumerate(rows):
            folder = folders.get(label)
            if folder is None:
                folder = folders[label] = outputs.prepared_dir / split_name / label
                folder.mkdir(parents=True, exist_ok=True)
            target = folder / _unique_png_name(Path(path).stem, taken.setdefault(label, set()))
            # Plain write: the folder is a Snakemake output, removed whole if the job fails.
            os.replace(staging / f"{index}.png", target)
            prepared_path[idx] = str(target)
            cache_index[idx] = pos
        write_npz(
            outputs.cache_dir / f"{split_name}.npz",
            images=stack,
            labels=group["label"].map(label_to_int).to_numpy(np.int64),
            label_names=np.array(labels),
            patient_ids=group["patient_id"].to_numpy(str),
            paths=group["path"].to_numpy(str),
            sha256=group["sha256"].to_numpy(str),
        )
    images["prepared_path"] = prepared_path
    images["cache_index"] = cache_index
    return images
