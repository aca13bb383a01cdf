"""One prepared GPU check of every GPU stage of the study, summarised in one table.

    python benchmarks/gpu_check.py                       # full check on CUDA, < 8 min on one GPU
    python benchmarks/gpu_check.py --out gpu_check.json  # also write the table (.json or .csv)
    python benchmarks/gpu_check.py --tiny                # tiny models and steps, CPU, < 1 min

Each stage trains or runs the project's own code (nothing here is model code) on phantom
radiographs rendered in memory (`cxrlib.data.phantom.render_radiograph`), then checks it:

  dcgan        `DcganTrainer` at the study's settings (64 px, batch 64, nz 100, width 64);
  stylegan2ada `StyleGan2AdaTrainer`, preset paper256 at 256 px (batch 64, R1 every 16 steps,
               path length every 4, ADA from p = 0.2 so that its augmentations are timed);
  classifier   `ClassifierTrainer`, ResNet50 from scratch at 224 px, batch 32;
  score/*      feature extraction (`extract_features`) with torch-fidelity's InceptionV3 (the
               file of --inception-weights, else random He-scaled weights of the same
               architecture made offline: the cost per image is the same) and with the CXR
               extractor (`make_extractor("cxr")`: a ResNet50 classifier file at 224 px);
  generate/*   `cxrlib.samples.write_samples` from a snapshot written on the device (the
               trained StyleGAN2-ADA G_ema and DCGAN G when their stages ran, else fresh ones).

Columns of the table:
  steps      timed steps (training) or batches (scoring, generation);
  losses     the last step's losses (G/D, r1/pl when computed; the classifier's loss);
  finite     every loss of every step was finite ("-": the stage has no loss);
  resume     the state saved after the timed steps (`StateStore`) is loaded into a fresh trainer,
             which then takes the same next steps as the uninterrupted one: all weights,
             optimiser moments and losses must be bitwise equal on the CPU; on CUDA (whose
             kernels need not be deterministic) the losses must agree to 1% and the weights'
             distance must be below 5% of what those steps changed (the figure shown);
  snapshot   the file written on the device loads on the CPU (`torch.load(map_location="cpu",
             weights_only=True)`, tensors equal to the device's), rebuilds there
             (`load_generator` / `load_classifier` / the extractor) and gives what the device
             gives (mean |difference| shown: bf16 layers on CUDA make it non-zero);
  throughput DCGAN img/s, StyleGAN2-ADA s/kimg, scoring img/s, classifier img/s, generation
             img/s (PNG files included, as the workflow writes them); wall clock, synchronised;
  peak MiB   `torch.cuda.max_memory_allocated` over the stage (reset per stage; "-" on a CPU);
  status     ok, FAIL (the reason in the note column; the traceback goes to stderr) or skipped.
The exit status is 1 when any check fails (the table is printed all the same).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from cxrlib.classifier.networks import build_classifier, load_classifier, save_classifier
from cxrlib.classifier.trainer import ClassifierTrainer, classifier_settings
from cxrlib.data.phantom import render_radiograph
from cxrlib.dcgan.trainer import DcganSettings, DcganTrainer
from cxrlib.dcgan.trainer import prepare_images as dcgan_images
from cxrlib.device import configure_cuda
from cxrlib.io import write_csv, write_json
from cxrlib.jobs.survival import StateStore
from cxrlib.samples import write_samples
from cxrlib.scoring.features import ExtractorSources, make_extractor, resize_uint8
from cxrlib.scoring.fidelity import array_batches, extract_features, file_sha256
from cxrlib.snapshot import build_generator, load_generator, read_snapshot, save_snapshot
from cxrlib.stylegan2ada.trainer import StyleGan2AdaTrainer, stylegan_settings
from cxrlib.stylegan2ada.trainer import prepare_images as stylegan_images

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scoring_throughput import make_inception_weights

COLUMNS = (
    "stage",
    "steps",
    "losses",
    "finite",
    "resume",
    "snapshot",
    "throughput",
    "peak MiB",
    "status",
    "note",
)
RESUME_STEPS = 3  # steps compared after the resume (StyleGAN2-ADA: one ADA interval)
CUDA_LOSS_RTOL = 0.01
CUDA_WEIGHT_RATIO = 0.05  # |weights(resumed) - weights(uninterrupted)| / |change of the steps|
SNAPSHOT_MEAN_ABS = {"cpu": 1e-4, "cuda": 0.05}  # mean |device - CPU| of samples or outputs


class CheckFailed(AssertionError):
    """One check of a stage failed; the message says which and by how much."""


@dataclass(frozen=True)
class Plan:
    """Sizes of one check: the study's (full) or tiny ones for a CPU."""

    tiny: bool
    pool: int  # phantom radiographs rendered once
    pool_px: int
    dcgan_steps: int
    stylegan_steps: int  # a multiple of the R1 interval, so R1 runs at its true rate
    classifier_steps: int
    score_batches: int
    generate_batches: int

    @staticmethod
    def make(tiny: bool, steps: int | None) -> Plan:
        if tiny:
            s = steps or 4
            return Plan(True, 16, 48, s, 4 * math.ceil(s / 4), s, 2, 2)
        s = steps
        return Plan(
            False, 128, 256, s or 300, 16 * math.ceil((s or 48) / 16), s or 200, s or 40, s or 16
        )


@dataclass
class Row:
    stage: str
    steps: int | str = "-"
    losses: str = "-"
    finite: str = "-"
    resume: str = "-"
    snapshot: str = "-"
    throughput: str = "-"
    peak_mib: str = "-"
    status: str = "ok"
    note: str = ""
    value: float = math.nan  # the throughput figure alone, for --out
    unit: str = ""
    settings: list[str] = field(default_factory=list)

    def cells(self) -> list[str]:
        return [
            self.stage,
            str(self.steps),
            self.losses,
            self.finite,
            self.resume,
            self.snapshot,
            self.throughput,
            self.peak_mib,
            self.status,
            self.note,
        ]


# -- helpers ---------------------------------------------------------------------------------


def is_cuda(device: torch.device) -> bool:
    return device.type == "cuda"


def sync(device: torch.device) -> None:
    if is_cuda(device):
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def timed(device: torch.device) -> Iterator[list[float]]:
    """Wall seconds of the block, device synchronised at both ends: `with timed(d) as t: ...`."""
    out: list[float] = []
    sync(device)
    start = time.perf_counter()
    yield out
    sync(device)
    out.append(time.perf_counter() - start)


def phantom_pool(plan: Plan) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, px, px) radiographs, NORMAL and PNEUMONIA alternating, and labels 0/1."""
    rng = np.random.default_rng(0)
    images = [
        render_radiograph(rng, plan.pool_px, plan.pool_px, bool(i % 2)) for i in range(plan.pool)
    ]
    return np.stack(images), np.arange(plan.pool) % 2


def repeat_to(images: np.ndarray, n: int) -> np.ndarray:
    return images[np.arange(n) % len(images)]


def check_finite(metrics: list[dict[str, float]], keys: tuple[str, ...]) -> str:
    """Return "ok" when every step's `keys` are finite (NaN r1/pl = not computed that step)."""
    for i, m in enumerate(metrics):
        for key in keys:
            if not math.isfinite(m[key]):
                raise CheckFailed(f"{key} = {m[key]} at timed step {i + 1}")
    return "ok"


def last_losses(metrics: list[dict[str, float]], keys: tuple[str, ...]) -> str:
    """The last finite value of each key, e.g. "G 0.71 D 1.38"."""
    parts = []
    for key in keys:
        values = [m[key] for m in metrics if math.isfinite(m.get(key, math.nan))]
        if values:
            parts.append(f"{key.removeprefix('loss_')} {values[-1]:.3g}")
    return " ".join(parts) or "-"


def tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(path, leaf) of nested dicts/lists/tuples: tensors and plain numbers."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from tensors(value, f"{prefix}/{key}")
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            yield from tensors(value, f"{prefix}/{i}")
    else:
        yield prefix, obj


def first_difference(a: Any, b: Any, skip: tuple[str, ...]) -> str | None:
    """The first leaf where two states differ bit for bit (None: identical), `skip` ignored."""
    left, right = dict(tensors(a)), dict(tensors(b))
    if left.keys() != right.keys():
        return f"keys differ: {sorted(left.keys() ^ right.keys())[:3]}"
    for key, x in left.items():
        if any(s in key for s in skip):
            continue
        y = right[key]
        if isinstance(x, torch.Tensor):
            same = x.shape == y.shape and x.dtype == y.dtype and torch.equal(x.cpu(), y.cpu())
        elif isinstance(x, float) and math.isnan(x):
            same = isinstance(y, float) and math.isnan(y)
        else:
            same = x == y
        if not same:
            return key
    return None


def weight_ratio(
    saved: dict[str, torch.Tensor], a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]
) -> float:
    """|b - a| / |a - saved| over the floating-point weights (a: uninterrupted, b: resumed)."""
    diff, change = 0.0, 0.0
    for key, x in a.items():
        if not x.is_floating_point():
            continue
        x = x.detach().double().cpu()
        diff += float((b[key].detach().double().cpu() - x).square().sum())
        change += float((x - saved[key].double()).square().sum())
    return math.sqrt(diff) / max(math.sqrt(change), 1e-30)


def check_resume(
    trainer: Any,
    make_fresh: Callable[[], Any],
    weights: Callable[[dict[str, Any]], dict[str, torch.Tensor]],
    loss_keys: tuple[str, ...],
    steps: int,
    folder: Path,
    skip: tuple[str, ...] = (),
) -> str:
    """Save `trainer` (StateStore), load into a fresh trainer, take `steps` more with both."""
    store = StateStore(folder)
    store.save(trainer.state_dict(), trainer.step)
    saved = store.load()
    assert saved is not None
    fresh = make_fresh()
    fresh.load_state_dict(saved)
    ours = [trainer.train_step() for _ in range(steps)]
    theirs = [fresh.train_step() for _ in range(steps)]
    a, b = trainer.state_dict(), fresh.state_dict()
    if not is_cuda(trainer.device):
        for m, n in zip(ours, theirs, strict=True):
            if first_difference(m, n, ()) is not None:
                raise CheckFailed(f"resume: losses differ {m} vs {n}")
        where = first_difference(a, b, skip)
        if where is not None:
            raise CheckFailed(f"resume: state differs at {where}")
        return "ok (bitwise)"
    for m, n in zip(ours, theirs, strict=True):
        for key in loss_keys:
            x, y = m[key], n[key]
            if math.isfinite(x) != math.isfinite(y) or (
                math.isfinite(x) and abs(x - y) > CUDA_LOSS_RTOL * max(abs(x), 1e-3)
            ):
                raise CheckFailed(f"resume: {key} {x} vs {y}")
    ratio = weight_ratio(weights(saved), weights(a), weights(b))
    if not ratio < CUDA_WEIGHT_RATIO:
        raise CheckFailed(f"resume: weights off by {ratio:.2g} of the steps' change")
    return f"ok ({ratio:.1e})"


def check_file_on_cpu(path: Path, device_state: dict[str, torch.Tensor], key: str) -> None:
    """The file loads on the CPU with weights_only and holds the device's tensors exactly."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    stored = payload[key]
    for name, value in device_state.items():
        if not torch.equal(stored[name], value.detach().cpu()):
            raise CheckFailed(f"snapshot: {name} differs from the device's")


def compare_outputs(on_device: torch.Tensor, on_cpu: torch.Tensor, device: torch.device) -> str:
    if not torch.isfinite(on_cpu).all():
        raise CheckFailed("snapshot: non-finite output on the CPU")
    diff = float((on_device.float().cpu() - on_cpu.float()).abs().mean())
    if not diff <= SNAPSHOT_MEAN_ABS[device.type]:
        raise CheckFailed(f"snapshot: CPU output differs from the device's by {diff:.2g}")
    return f"ok ({diff:.1e})"


def check_generator_snapshot(
    path: Path, generator: torch.nn.Module, model: str, device: torch.device
) -> str:
    check_file_on_cpu(path, generator.state_dict(), "generator")
    if read_snapshot(path)["model"] != model:
        raise CheckFailed("snapshot: wrong model name")
    on_cpu = load_generator(path, "cpu")
    with torch.no_grad():
        x = generator.sample(8, torch.Generator().manual_seed(1))
        y = on_cpu.sample(8, torch.Generator().manual_seed(1))
    return compare_outputs(x, y, device)


# -- stages ----------------------------------------------------------------------------------


class Check:
    """Runs the stages, each in its own try, and keeps their rows."""

    def __init__(self, plan: Plan, device: torch.device, work: Path, inception: Path | None):
        self.plan, self.device, self.work, self.inception = plan, device, work, inception
        self.rows: list[Row] = []
        self.snapshots: dict[str, Path] = {}
        self.pool, self.labels = phantom_pool(plan)

    def run(self, name: str, stage: Callable[[Row], None]) -> None:
        row = Row(name)
        print(f"[gpu_check] {name} ...", file=sys.stderr, flush=True)
        if is_cuda(self.device):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        start = time.perf_counter()
        try:
            stage(row)
        except Exception as exc:  # one broken stage must not hide the others
            traceback.print_exc()
            row.status = "FAIL"
            row.note = f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
        if is_cuda(self.device):
            row.peak_mib = f"{torch.cuda.max_memory_allocated(self.device) / 2**20:.0f}"
        print(
            f"[gpu_check] {name}: {row.status} in {time.perf_counter() - start:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        self.rows.append(row)

    def folder(self, name: str) -> Path:
        path = self.work / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    # DCGAN ---------------------------------------------------------------------------------

    def dcgan(self, row: Row) -> None:
        p = self.plan
        settings = (
            DcganSettings(image_size=32, nz=16, ngf=8, ndf=8, batch_size=8, seed=0)
            if p.tiny
            else DcganSettings(image_size=64, batch_size=64, seed=0)
        )
        data = dcgan_images(self.pool, settings.image_size, 1, self.device, settings.channels_last)

        def make() -> DcganTrainer:
            return DcganTrainer(data, settings, self.device)

        trainer = make()
        row.settings.append(
            f"dcgan: {settings.image_size} px, batch {settings.batch_size}, "
            f"bf16 autocast {trainer.bf16}, channels_last "
            f"{settings.channels_last}, fused Adam"
        )
        for _ in range(2 if p.tiny else 10):
            trainer.train_step()
        with timed(self.device) as t:
            metrics = [trainer.train_step() for _ in range(p.dcgan_steps)]
        row.steps = p.dcgan_steps
        ips = p.dcgan_steps * settings.batch_size / t[0]
        row.value, row.unit, row.throughput = ips, "img/s", f"{ips:.1f} img/s"
        keys = ("loss_d", "loss_g")
        row.losses, row.finite = last_losses(metrics, keys), check_finite(metrics, keys)
        snap = self.folder("dcgan") / "snapshot.pt"
        save_snapshot(
            snap,
            "dcgan",
            trainer.generator.kwargs(),
            trainer.generator,
            progress={"epoch": trainer.epoch},
            run="gpu_check",
            seed=0,
        )
        self.snapshots["dcgan"] = snap
        row.snapshot = check_generator_snapshot(snap, trainer.generator, "dcgan", self.device)
        row.resume = check_resume(
            trainer,
            make,
            lambda s: s["generator"] | {f"D.{k}": v for k, v in s["discriminator"].items()},
            keys,
            RESUME_STEPS,
            self.folder("dcgan/state"),
            skip=("/sums/seconds", "/history"),
        )

    # StyleGAN2-ADA -------------------------------------------------------------------------

    def stylegan(self, row: Row) -> None:
        p = self.plan
        base: dict[str, Any] = {
            "preset": "paper256",
            "resolution": 256,
            "augment": "ada",
            "augment_p": 0.2,
            "seed": 0,
        }
        if p.tiny:
            base |= {
                "resolution": 32,
                "channel_base": 512,
                "channel_max": 32,
                "z_dim": 32,
                "w_dim": 32,
                "mapping_layers": 2,
                "batch_size": 4,
                "mbstd_group": 4,
                "r1_interval": 4,
                "pl_interval": 2,
            }
        s = stylegan_settings(base)
        data = stylegan_images(self.pool, s.resolution, s.channels, self.device)

        def make() -> StyleGan2AdaTrainer:
            return StyleGan2AdaTrainer(data, s, device=self.device)

        trainer = make()
        row.settings.append(
            f"stylegan2ada: preset {s.preset}, {s.resolution} px, batch {s.batch_size}, "
            f"gamma {s.gamma}, R1 every {s.r1_interval}, path length every {s.pl_interval} "
            f"(weight {s.pl_weight}), ADA p0 {s.augment_p} every {s.ada_interval}, bf16 in the "
            f"top {s.num_fp16_res} resolutions on CUDA ({'on' if is_cuda(self.device) else 'off'})"
        )
        # Warm-up ends on a multiple of both regularisation intervals: the timed steps run
        # R1 and path length at their true rates, and the resume check starts with both.
        period = math.lcm(s.r1_interval, s.pl_interval, s.ada_interval)
        for _ in range(period):
            trainer.train_step()
        with timed(self.device) as t:
            metrics = [trainer.train_step() for _ in range(p.stylegan_steps)]
        row.steps = p.stylegan_steps
        s_per_kimg = t[0] * 1000 / (p.stylegan_steps * s.batch_size)
        row.value, row.unit, row.throughput = s_per_kimg, "s/kimg", f"{s_per_kimg:.2f} s/kimg"
        keys = ("loss_g", "loss_d", "r1", "pl")
        row.losses = last_losses(metrics, keys)
        row.finite = check_finite(metrics, ("loss_g", "loss_d"))
        for key in ("r1", "pl"):
            if not any(math.isfinite(m[key]) for m in metrics):
                raise CheckFailed(f"no {key} step among the timed steps")
        snap = self.folder("stylegan2ada") / "snapshot.pt"
        save_snapshot(
            snap,
            "stylegan2ada",
            s.generator_kwargs(),
            trainer.G_ema,
            progress={"kimg": trainer.kimg},
            run="gpu_check",
            seed=0,
        )
        self.snapshots["stylegan2ada"] = snap
        row.snapshot = check_generator_snapshot(snap, trainer.G_ema, "stylegan2ada", self.device)
        row.resume = check_resume(
            trainer,
            make,
            lambda st: {f"{n}.{k}": v for n in ("G", "D") for k, v in st[n].items()},
            ("loss_g", "loss_d", "r1", "pl"),
            s.ada_interval,
            self.folder("stylegan2ada/state"),
            skip=("/elapsed_s", "/seconds", "/s_per_kimg", "/start_s"),
        )

    # Classifier ----------------------------------------------------------------------------

    def classifier_settings(self) -> tuple[str, int, int]:
        return ("resnet18", 32, 4) if self.plan.tiny else ("resnet50", 224, 32)

    def classifier(self, row: Row) -> None:
        p = self.plan
        arch, size, batch = self.classifier_settings()
        settings = classifier_settings(
            {
                "arch": arch,
                "weights": None,
                "image_size": size,
                "epochs": 1,
                "batch_size": batch,
                "patience": 0,
            }
        )
        small = resize_uint8(self.pool, size)
        # One epoch longer than the check: no epoch end (validation) inside the timed steps.
        n = batch * (p.classifier_steps + RESUME_STEPS + 8)
        train = (repeat_to(small, n), repeat_to(self.labels, n))
        val = (small[: 2 * batch], self.labels[: 2 * batch])

        def make() -> ClassifierTrainer:
            return ClassifierTrainer(train, val, settings, ("NORMAL", "PNEUMONIA"), 1, self.device)

        trainer = make()
        row.settings.append(
            f"classifier: {arch} at {size} px, batch {batch}, bf16 autocast {trainer.amp}, "
            f"channels_last {trainer.memory_format == torch.channels_last}"
        )
        for _ in range(2 if p.tiny else 5):
            trainer.train_step()
        with timed(self.device) as t:
            metrics = [trainer.train_step() for _ in range(p.classifier_steps)]
        row.steps = p.classifier_steps
        ips = p.classifier_steps * batch / t[0]
        row.value, row.unit, row.throughput = ips, "img/s", f"{ips:.1f} img/s"
        row.losses, row.finite = last_losses(metrics, ("loss",)), check_finite(metrics, ("loss",))
        path = self.folder("classifier") / "model.pt"
        save_classifier(
            path,
            trainer.model,
            arch=arch,
            image_size=size,
            label_names=trainer.label_names,
            positive_index=1,
            settings=settings.to_dict(),
        )
        check_file_on_cpu(path, trainer.model.state_dict(), "state_dict")
        on_cpu, _ = load_classifier(path, "cpu")
        x = torch.from_numpy(small[:8]).unsqueeze(1).float().div(255)
        trainer.model.eval()
        with torch.no_grad():
            y_dev = trainer.model(x.to(self.device)).softmax(1)
            y_cpu = on_cpu(x).softmax(1)
        trainer.model.train()
        row.snapshot = compare_outputs(y_dev, y_cpu, self.device)
        row.resume = check_resume(
            trainer,
            make,
            lambda st: st["model"],
            ("loss",),
            RESUME_STEPS,
            self.folder("classifier/state"),
            skip=("/epoch_seconds",),
        )

    # Scoring -------------------------------------------------------------------------------

    def score(self, row: Row, name: str) -> None:
        p = self.plan
        batch = 4 if p.tiny else 64
        res = 32 if p.tiny else 256  # the generators' resolutions
        if name == "inception":
            weights = self.inception
            if weights is None:
                weights = self.folder("scoring") / "inception_random_he.pth"
                make_inception_weights(weights)
                row.note = "random weights (give --inception-weights PATH for the real file)"
            sources = ExtractorSources(
                inception_weights=weights, inception_sha256=file_sha256(weights)
            )
            stored, key = weights, None
        else:
            arch, size, _ = self.classifier_settings()
            model_path = self.folder("scoring") / f"cxr_{arch}.pt"
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = build_classifier(arch)
            save_classifier(
                model_path,
                model,
                arch=arch,
                image_size=size,
                label_names=("NORMAL", "PNEUMONIA"),
                positive_index=1,
                settings={},
            )
            sources = ExtractorSources(domain_model=model_path)
            stored, key = model_path, "state_dict"
        extractor = make_extractor(name, sources, str(self.device))
        row.settings.append(f"score/{name}: batch {batch}, {res} px uint8 images, fp32")
        images = repeat_to(resize_uint8(self.pool, res), batch * p.score_batches)
        extract_features(extractor, array_batches(images[:batch], batch), self.device)
        with timed(self.device) as t:
            features = extract_features(extractor, array_batches(images, batch), self.device)
        row.steps = p.score_batches
        ips = len(images) / t[0]
        row.value, row.unit, row.throughput = ips, "img/s", f"{ips:.1f} img/s"
        row.finite = "ok" if np.isfinite(features).all() else "FAIL"
        if row.finite != "ok":
            raise CheckFailed("non-finite features")
        # The extractor's file, read on the CPU, gives the device's features.
        torch.load(stored, map_location="cpu", weights_only=True)
        if key is not None:
            on_dev = extractor.model  # type: ignore[attr-defined] (a DomainExtractor)
            check_file_on_cpu(stored, on_dev.state_dict(), key)
        on_cpu = make_extractor(name, sources, "cpu")
        few = images[:batch]
        a = extract_features(extractor, array_batches(few, batch), self.device)
        b = extract_features(on_cpu, array_batches(few, batch), "cpu")
        scale = max(float(np.abs(b).mean()), 1e-12)
        row.snapshot = compare_outputs(
            torch.from_numpy(a) / scale, torch.from_numpy(b) / scale, self.device
        )

    # Generation ----------------------------------------------------------------------------

    def generate(self, row: Row, model: str) -> None:
        p = self.plan
        snap = self.snapshots.get(model)
        if snap is None:  # its training stage failed: a fresh generator, written here
            if model == "dcgan":
                kwargs = (
                    {"nz": 16, "ngf": 8, "channels": 1, "image_size": 32}
                    if p.tiny
                    else {"nz": 100, "ngf": 64, "channels": 1, "image_size": 64}
                )
            else:
                s = stylegan_settings(
                    {"preset": "paper256", "resolution": 32 if p.tiny else 256}
                    | (
                        {"channel_base": 512, "channel_max": 32, "z_dim": 32, "w_dim": 32}
                        if p.tiny
                        else {}
                    )
                )
                kwargs = s.generator_kwargs()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                net = build_generator(model, kwargs).to(self.device)
            snap = self.folder(f"generate_{model}") / "snapshot.pt"
            save_snapshot(snap, model, kwargs, net, progress={}, run="gpu_check", seed=0)
            row.note = "fresh generator (its training stage failed)"
        on_device = load_generator(snap, self.device)
        row.snapshot = check_generator_snapshot(snap, on_device, model, self.device)
        batch = 16 if p.tiny else 64
        out = self.folder(f"samples_{model}")
        row.settings.append(f"generate/{model}: batch {batch}, fp32 sampling + PNG writing")
        write_samples(
            snap,
            self.folder(f"warm_{model}"),
            batch,
            label="NORMAL",
            seed=1,
            batch_size=batch,
            device=str(self.device),
        )
        n = batch * p.generate_batches
        with timed(self.device) as t:
            index = write_samples(
                snap, out, n, label="NORMAL", seed=0, batch_size=batch, device=str(self.device)
            )
        row.steps = p.generate_batches
        ips = n / t[0]
        row.value, row.unit, row.throughput = ips, "img/s", f"{ips:.1f} img/s"
        files = sorted((out / "NORMAL").glob("*.png"))
        if len(index) != n or len(files) != n:
            raise CheckFailed(f"wrote {len(files)} PNGs and {len(index)} index rows, not {n}")


# -- report ----------------------------------------------------------------------------------


def environment(device: torch.device) -> list[str]:
    lines = [
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"CUDA build {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
    ]
    if is_cuda(device):
        props = torch.cuda.get_device_properties(device)
        lines.append(
            f"device {device}: {props.name}, {props.total_memory / 2**30:.1f} GiB, "
            f"compute capability {props.major}.{props.minor}, bf16 supported "
            f"{torch.cuda.is_bf16_supported()}"
        )
    else:
        lines.append(
            f"device cpu: {platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} torch threads"
        )
    lines.append(
        f"TF32: matmul {torch.backends.cuda.matmul.allow_tf32}, cuDNN "
        f"{torch.backends.cudnn.allow_tf32}; float32 matmul precision "
        f"{torch.get_float32_matmul_precision()}; cudnn.benchmark {torch.backends.cudnn.benchmark}"
        f", deterministic {torch.backends.cudnn.deterministic}"
        " (GPU jobs set them: cxrlib.device.configure_cuda)"
    )
    return lines


def format_table(rows: list[Row]) -> str:
    cells = [list(COLUMNS)] + [r.cells() for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = [
        " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def write_out(path: Path, rows: list[Row], header: list[str], seconds: float) -> None:
    records = []
    for r in rows:
        d = asdict(r)
        d["peak MiB"] = d.pop("peak_mib")
        records.append(d)
    if path.suffix == ".json":
        write_json({"environment": header, "wall_s": seconds, "rows": records}, path)
    else:
        frame = pd.DataFrame(records).drop(columns="settings")
        write_csv(frame, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="tiny models, images and steps (runs on a CPU in well under a minute)",
    )
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="timed steps (batches) of every stage; default: per stage",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the table (.csv/.json)")
    parser.add_argument(
        "--inception-weights",
        type=Path,
        default=None,
        help="torch-fidelity's InceptionV3 file (default: random weights, "
        "same architecture, made offline)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.out is not None and args.out.suffix not in (".csv", ".json"):
        parser.error("--out must end in .csv or .json")
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be >= 1")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if is_cuda(device) and not torch.cuda.is_available():
        print(
            "gpu_check: CUDA is not available on this machine; use --tiny --device cpu",
            file=sys.stderr,
        )
        return 2
    if not is_cuda(device) and not args.tiny:
        print(
            f"gpu_check: the full check trains the study's models on a GPU; on {device} it "
            "would take hours. Run it on a CUDA machine, or add --tiny for the small check.",
            file=sys.stderr,
        )
        return 2
    if args.inception_weights is not None and not args.inception_weights.is_file():
        parser.error(f"--inception-weights {args.inception_weights} does not exist")
    if args.threads:
        torch.set_num_threads(args.threads)
    if is_cuda(device):
        torch.cuda.set_device(device)
        configure_cuda()  # what every GPU job of the workflow sets (cxrlib.device.setup_torch)
    plan = Plan.make(args.tiny, args.steps)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        check = Check(plan, device, Path(tmp), args.inception_weights)
        check.run("dcgan", check.dcgan)
        check.run("stylegan2ada", check.stylegan)
        check.run("classifier", check.classifier)
        check.run("score/inception", lambda r: check.score(r, "inception"))
        check.run("score/cxr", lambda r: check.score(r, "cxr"))
        check.run("generate/stylegan2ada", lambda r: check.generate(r, "stylegan2ada"))
        check.run("generate/dcgan", lambda r: check.generate(r, "dcgan"))
    seconds = time.perf_counter() - start
    header = [*environment(device), f"mode: {'tiny' if plan.tiny else 'full'}"]
    header += [line for r in check.rows for line in r.settings]
    print("\n".join(header))
    print(format_table(check.rows))
    failed = [r.stage for r in check.rows if r.status == "FAIL"]
    print(f"wall {seconds:.1f} s; " + (f"FAILED: {', '.join(failed)}" if failed else "all ok"))
    if args.out is not None:
        write_out(args.out, check.rows, header, seconds)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
