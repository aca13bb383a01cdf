"""StyleGAN2-ADA with ADA on vs off on a 100-image phantom set: FID/KID over the same budget.

    python benchmarks/ada_ablation.py --images 100 --res 32 --kimg 15 --snapshot-kimg 5 \
        --seed 0 --out benchmarks/out/ada_ablation.csv

The ADA paper's claim (Karras et al. 2020b, sections 2-3): with few training images D
overfits (its outputs on training reals drift away from those on unseen reals), FID gets
worse over training, and adaptive augmentation, p steered so that r_t = E[sign(D(aug(x)))]
stays at a target, stops the drift. This script checks that on a CPU scale:

1. data: `--images` NORMAL phantoms (`render_radiograph`, rendered at `--render-px` and
   resized to `--res`) to train on; `--reference` fresh NORMAL phantoms as the FID/KID
   reference, so the score measures the distribution, not memorisation of the training set;
2. feature space: Inception weights cannot be downloaded here, so a resnet18 is trained from
   scratch on other phantoms, NORMAL vs PNEUMONIA (`train_classifier`), and its pooled
   penultimate layer (512-d, `DomainExtractor`) is the space of FID/KID/precision/recall
   (and density/coverage, added after the run recorded in benchmarks/README.md);
3. two runs with the same seed, settings and kimg budget, augment='ada' and augment='off',
   run as two processes side by side (`--jobs 2`) with `--threads` torch threads each;
4. at every snapshot: the G_ema snapshot file (`save_snapshot`, the workflow's format), ADA's
   p and the mean r_t since the previous snapshot, and D's mean sign on the (non-augmented)
   training reals, on `--images` held-out reals and on as many fakes: the paper's overfitting
   signal is the gap between the first two;
5. after training: `--samples` images of each snapshot's G_ema (`load_generator`, seeded
   latents, psi 1) are scored against the reference (`score_features`).

Two reference rows frame the numbers: the training images themselves against the reference
(what perfect memorisation would score) and `--samples` fresh real phantoms against it (the
floor of FID at these set sizes: FID is biased upwards for finite sets).

Writes `--out` (CSV, one row per run and snapshot plus the reference rows; columns in
`COLUMNS`), the snapshots, grids and TRAIN_ROWS under `<out stem>/<arm>/`, and the classifier
in `<out stem>/`. `--score-only` scores what a stopped run left there (a shorter budget changes
no step before it, so the rows equal those of a run with `--kimg` at its last snapshot).
Time: ~25 s/kimg per arm on an idle core at the default settings; several times that when
the machine is shared.
Threads: one torch thread per process by default. On the shared 2-core machine two threads
per process made training steps 2-50x slower whenever other work held a core (OpenMP threads
wait for each other at every small op), so two single-threaded runs side by side use the two
cores far better than one two-threaded run after the other.
"""

from __future__ import annotations

import argparse
import logging
import math
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from cxrlib.classifier.trainer import classifier_settings, train_classifier
from cxrlib.data.phantom import render_radiograph
from cxrlib.io import write_csv
from cxrlib.scoring.domain import DomainExtractor
from cxrlib.scoring.features import resize_uint8
from cxrlib.scoring.fidelity import (
    array_batches,
    extract_features,
    generator_batches,
    score_features,
)
from cxrlib.snapshot import load_generator
from cxrlib.stylegan2ada.trainer import (
    SnapshotWriter,
    StyleGan2AdaTrainer,
    prepare_images,
    snapshot_kimgs,
    snapshot_name,
    snapshot_step,
    stylegan_settings,
)

log = logging.getLogger("ada_ablation")

ARMS: tuple[str, ...] = ("ada", "off")
COLUMNS = (
    "arm", "kimg", "kimg_shown", "step", "train_s", "fid", "kid_mean", "kid_std",
    "precision", "recall", "density", "coverage", "ada_p", "ada_rt", "d_sign_train",
    "d_sign_heldout", "d_sign_fake", "n_fake", "n_real",
)  # fmt: skip
# What training records per snapshot, written after every snapshot to <arm folder>/TRAIN_ROWS,
# so that the snapshots of a run stopped early can still be scored (`--score-only`).
TRAIN_COLUMNS = (
    "arm", "kimg", "kimg_shown", "step", "train_s", "ada_p", "ada_rt", "d_sign_train",
    "d_sign_heldout", "d_sign_fake",
)  # fmt: skip
TRAIN_ROWS = "train_rows.csv"
CLASSIFIER_FILE = "classifier_resnet18.pt"
# Separate generator streams per role, so e.g. a larger reference never changes the
# training images.
_TRAIN_STREAM, _REFERENCE_STREAM, _HELDOUT_STREAM, _FRESH_STREAM, _CLASSIFIER_STREAM = range(5)


# --------------------------------------------------------------------------------------------
# Data and feature space.


def render_phantoms(
    n: int, diseased: bool, seed: int, stream: int, render_px: int, res: int
) -> np.ndarray:
    """n phantoms, uint8 (n, res, res): rendered at render_px (the anatomy needs the pixels
    to be drawn faithfully), then resized with antialiasing as the workflow resizes reals."""
    rng = np.random.default_rng([seed, stream, int(diseased)])
    full = np.stack([render_radiograph(rng, render_px, render_px, diseased) for _ in range(n)])
    return resize_uint8(full, res)


def train_feature_classifier(
    folder: Path, n_per_class: int, args: argparse.Namespace
) -> tuple[Path, float]:
    """A resnet18 trained from scratch on phantoms (NORMAL vs PNEUMONIA) at the GAN's
    resolution; returns (model file, best validation AUROC). Its inputs are upsampled to
    `--classifier-px` (resnet18 at 32 px would pool everything away by its last stage)."""
    n_val = max(n_per_class // 4, 8)

    def split(n: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
        normal = render_phantoms(n, False, args.seed, _CLASSIFIER_STREAM + offset,
                                 args.render_px, args.res)  # fmt: skip
        sick = render_phantoms(n, True, args.seed, _CLASSIFIER_STREAM + offset,
                               args.render_px, args.res)  # fmt: skip
        return np.concatenate([normal, sick]), np.repeat([0, 1], n)

    settings = classifier_settings(
        {
            "arch": "resnet18", "image_size": args.classifier_px,
            "epochs": args.classifier_epochs, "batch_size": 32, "lr": 1e-3, "patience": 0,
            "seed": args.seed,
        }
    )  # fmt: skip
    model = folder / CLASSIFIER_FILE
    summary = train_classifier(
        split(n_per_class, 0), split(n_val, 10), settings, model, folder / "classifier_state",
        history_path=folder / "classifier_history.csv", label_names=("NORMAL", "PNEUMONIA"),
    )  # fmt: skip
    return model, float(summary["best_val_auroc"])


def real_features(extractor: DomainExtractor, images: np.ndarray) -> np.ndarray:
    """Features (N, 512) of uint8 (N, H, W) real images."""
    return extract_features(extractor, array_batches(images, 100))


# --------------------------------------------------------------------------------------------
# One arm: train, then score its snapshots.


@dataclass(frozen=True)
class ArmJob:
    """Everything one worker process needs (picklable: it crosses a process boundary)."""

    arm: str  # "ada" | "off"
    train: np.ndarray  # uint8 (N, R, R) training images
    heldout: np.ndarray  # uint8 (N, R, R) unseen reals for D's overfitting signal
    reference_features: np.ndarray  # (M, 512) features of the FID/KID reference
    classifier: Path
    folder: Path  # snapshots and grids go here
    settings: dict[str, Any]  # stylegan_settings input
    samples: int  # generated images scored per snapshot
    threads: int
    score_only: bool = False  # score the snapshots and TRAIN_ROWS already in `folder`


@torch.no_grad()
def d_sign(D: torch.nn.Module, images: torch.Tensor, batch: int) -> float:
    """Mean sign of D's logits over images (N, C, R, R) in [-1, 1], not augmented.

    Batches of `batch` (a multiple of D's minibatch-std group, as in training); a remainder
    that fills no whole group is left out."""
    images = images[: len(images) - len(images) % D.mbstd_group]
    signs = [torch.sign(D(images[i : i + batch])).sum() for i in range(0, len(images), batch)]
    return float(torch.stack(signs).sum()) / len(images)


def train_arm(job: ArmJob) -> list[dict[str, Any]]:
    """Train one run; at each snapshot record p, r_t and D's signs. Returns one row a snapshot
    (scores filled in by `score_arm`)."""
    s = stylegan_settings(job.settings)
    x = prepare_images(job.train, s.resolution, s.channels)
    heldout = prepare_images(job.heldout, s.resolution, s.channels)
    trainer = StyleGan2AdaTrainer(x, s)
    writer = SnapshotWriter(job.folder, s, run=f"ada_ablation_{job.arm}")
    due = {snapshot_step(k, s.batch_size): k for k in snapshot_kimgs(s)}
    rts: list[float] = []  # r_t of each ADA update since the last snapshot
    rows = []
    fake_rng = torch.Generator().manual_seed(s.seed + 1)
    while True:
        if trainer.step in due:
            writer.write(trainer, due[trainer.step])
            fakes = trainer.G_ema.sample(len(heldout), fake_rng)
            rows.append(
                {
                    "arm": job.arm, "kimg": due[trainer.step], "kimg_shown": trainer.kimg,
                    "step": trainer.step, "train_s": trainer.elapsed_s, "ada_p": trainer.ada_p,
                    "ada_rt": float(np.mean(rts)) if rts else math.nan,
                    "d_sign_train": d_sign(trainer.D, x, s.batch_size),
                    "d_sign_heldout": d_sign(trainer.D, heldout, s.batch_size),
                    "d_sign_fake": d_sign(trainer.D, fakes, s.batch_size),
                }
            )  # fmt: skip
            write_csv(pd.DataFrame(rows, columns=list(TRAIN_COLUMNS)), job.folder / TRAIN_ROWS)
            last = rows[-1]
            log.info(
                "%s kimg %g: p %.3f r_t %.3f, D sign train %+.2f held-out %+.2f fake %+.2f "
                "(%.0f s training)",
                job.arm, last["kimg"], last["ada_p"], last["ada_rt"], last["d_sign_train"],
                last["d_sign_heldout"], last["d_sign_fake"], last["train_s"],
            )  # fmt: skip
            rts = []
        if trainer.step >= s.total_steps:
            return rows
        metrics = trainer.train_step()
        if trainer.ada is not None and trainer.step % s.ada_interval == 0:
            rts.append(metrics["ada_rt"])


def score_arm(job: ArmJob, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """FID, KID, precision, recall of every snapshot's G_ema against the reference."""
    extractor = DomainExtractor(job.classifier)
    out = []
    for row in rows:
        G = load_generator(job.folder / "snapshots" / f"{snapshot_name(row['kimg'])}.pt")
        batches = generator_batches(G.sample, job.samples, batch_size=100, seed=2024)
        fake = extract_features(extractor, batches)
        scores = score_features(job.reference_features, fake)
        out.append({**row, "fid": scores.fid, "kid_mean": scores.kid_mean,
                    "kid_std": scores.kid_std, "precision": scores.precision,
                    "recall": scores.recall, "density": scores.density,
                    "coverage": scores.coverage, "n_fake": scores.n_fake,
                    "n_real": scores.n_real})  # fmt: skip
        log.info("%s kimg %g: FID %.2f KID %.4f", job.arm, row["kimg"], scores.fid,
                 scores.kid_mean)  # fmt: skip
    return out


def read_train_rows(job: ArmJob) -> list[dict[str, Any]]:
    """The rows a (possibly stopped) training of this arm recorded: one per snapshot taken."""
    path = job.folder / TRAIN_ROWS
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: train this arm first (no --score-only)")
    return pd.read_csv(path).to_dict("records")


def run_arm(job: ArmJob) -> list[dict[str, Any]]:
    """Worker entry point: one arm, trained (unless score_only) and scored, with its own
    thread count."""
    torch.set_num_threads(job.threads)
    _configure_logging()
    return score_arm(job, read_train_rows(job) if job.score_only else train_arm(job))


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(processName)s %(name)s: %(message)s",
        force=True,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Main.


def gan_settings(args: argparse.Namespace, arm: str) -> dict[str, Any]:
    """The run's settings: preset auto with the small-network overrides; only augment differs
    between the arms."""
    return {
        "preset": "auto", "resolution": args.res, "batch_size": args.batch,
        "channel_base": args.channel_base, "channel_max": args.channel_max,
        "mapping_layers": 2, "total_kimg": args.kimg, "snapshot_kimg": args.snapshot_kimg,
        "tick_kimg": args.snapshot_kimg, "augment": arm, "augment_p": 0.0,
        "ada_target": args.ada_target, "ada_kimg": args.ada_kimg, "seed": args.seed,
        "grid_size": 6,
    }  # fmt: skip


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=100, help="NORMAL phantoms to train on")
    p.add_argument("--res", type=int, default=32, help="training resolution, px")
    p.add_argument("--render-px", type=int, default=128, help="phantoms are drawn at this size")
    p.add_argument("--kimg", type=float, default=15.0, help="budget of each run, kimg")
    p.add_argument("--snapshot-kimg", type=float, default=5.0)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--channel-base", type=int, default=1024)
    p.add_argument("--channel-max", type=int, default=256)
    p.add_argument("--ada-target", type=float, default=0.6)
    p.add_argument("--ada-kimg", type=float, default=10.0, help="kimg for p to move by 1")
    p.add_argument("--reference", type=int, default=500, help="held-out reals for FID/KID")
    p.add_argument("--samples", type=int, default=1000, help="generated images per snapshot")
    p.add_argument("--classifier-images", type=int, default=400, help="per class")
    p.add_argument("--classifier-epochs", type=int, default=8)
    p.add_argument("--classifier-px", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2, choices=(1, 2), help="arms side by side")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument(
        "--score-only", action="store_true",
        help="no training: score the snapshots and train rows a previous (maybe stopped) run "
        "left next to --out, with its classifier when present",
    )  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/ada_ablation.csv"))
    return p.parse_args()


def main() -> None:
    args = parse_args()
    _configure_logging()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    folder = args.out.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)

    render = {
        "train": (args.images, _TRAIN_STREAM), "reference": (args.reference, _REFERENCE_STREAM),
        "heldout": (args.images, _HELDOUT_STREAM), "fresh": (args.samples, _FRESH_STREAM),
    }  # fmt: skip
    reals = {
        name: render_phantoms(n, False, args.seed, stream, args.render_px, args.res)
        for name, (n, stream) in render.items()
    }
    log.info("phantoms rendered (%.0f s)", time.perf_counter() - started)
    classifier = folder / CLASSIFIER_FILE
    if args.score_only and classifier.is_file():
        history = pd.read_csv(folder / "classifier_history.csv")
        auroc = float(history["val_auroc"].max())
    else:
        classifier, auroc = train_feature_classifier(folder, args.classifier_images, args)
    log.info("feature classifier: val AUROC %.3f (%.0f s)", auroc, time.perf_counter() - started)
    extractor = DomainExtractor(classifier)
    reference = real_features(extractor, reals["reference"])
    # Frames for the GAN's numbers: memorising the training set, and fresh reals.
    rows = []
    for name in ("train", "fresh"):
        sc = score_features(reference, real_features(extractor, reals[name]))
        rows.append({"arm": f"real:{name}", "fid": sc.fid, "kid_mean": sc.kid_mean,
                     "kid_std": sc.kid_std, "precision": sc.precision, "recall": sc.recall,
                     "density": sc.density, "coverage": sc.coverage, "n_fake": sc.n_fake,
                     "n_real": sc.n_real})  # fmt: skip
        log.info("reference row real:%s: FID %.2f KID %.4f", name, sc.fid, sc.kid_mean)

    jobs = [
        ArmJob(
            arm=arm,
            train=reals["train"],
            heldout=reals["heldout"],
            reference_features=reference,
            classifier=classifier,
            folder=folder / arm,
            settings=gan_settings(args, arm),
            samples=args.samples,
            threads=args.threads,
            score_only=args.score_only,
        )
        for arm in ARMS
    ]
    if args.jobs == 1:
        results = [run_arm(job) for job in jobs]
    else:
        # spawn: a fresh interpreter per arm (no forked OpenMP state), torch threads set there
        with ProcessPoolExecutor(len(jobs), mp_context=mp.get_context("spawn")) as pool:
            results = list(pool.map(run_arm, jobs))
    for arm_rows in results:
        rows.extend(arm_rows)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    write_csv(frame, args.out)
    log.info("wrote %s (%.0f s in all, classifier val AUROC %.3f, load average %s)", args.out,
             time.perf_counter() - started, auroc,
             " ".join(f"{v:.2f}" for v in os.getloadavg()))  # fmt: skip
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(frame.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
