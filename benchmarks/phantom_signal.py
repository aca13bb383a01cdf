"""How visible is the phantoms' disease? Test AUROC of a ResNet18 trained from scratch.

The classifier stage can only be tested on phantoms if their PNEUMONIA opacities are something a
small network finds at demo scale. This trains `cxrlib.classifier.trainer` (ResNet18, no
pretraining) on independently drawn phantom patients (no paired films), picks the epoch on a
validation set, and reports the AUROC on a held-out test set, per seed.

    python benchmarks/phantom_signal.py --per-class 100 --size 64 --epochs 12 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from cxrlib.classifier.trainer import classifier_settings, predict, train_classifier
from cxrlib.data.phantom import LABELS, render_radiograph
from cxrlib.data.preprocess import PreprocessSettings, preprocess_pixels


def phantoms(seed: int, per_class: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Prepared (equalised, resized) phantoms of independent patients, labels 0/1."""
    settings = PreprocessSettings(size=size)
    images, labels = [], []
    for i in range(per_class):
        for label in (0, 1):
            rng = np.random.default_rng([seed, i, label])
            height, width = (int(v) for v in rng.integers(600, 900, size=2))
            film = render_radiograph(rng, height, width, diseased=bool(label))
            images.append(preprocess_pixels(film, settings).image)
            labels.append(label)
    return np.stack(images), np.asarray(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=100, help="training images per class")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for seed in args.seeds:
        start = time.perf_counter()
        train = phantoms(100 + seed, args.per_class, args.size)
        val = phantoms(200 + seed, 20, args.size)
        test = phantoms(300 + seed, 40, args.size)
        settings = classifier_settings(
            dict(
                arch="resnet18",
                image_size=args.size,
                epochs=args.epochs,
                batch_size=16,
                lr=1e-3,
                patience=0,
                seed=seed,
            )
        )
        with tempfile.TemporaryDirectory() as tmp:
            out = train_classifier(
                train,
                val,
                settings,
                Path(tmp) / "m.pt",
                Path(tmp) / "state",
                history_path=Path(tmp) / "h.csv",
                label_names=LABELS,
            )
            auroc = roc_auc_score(test[1], predict(Path(tmp) / "m.pt", test[0]))
        print(
            f"seed {seed}: best val AUROC {out['best_val_auroc']:.3f} (epoch {out['best_epoch']}),"
            f" test AUROC {auroc:.3f}, {time.perf_counter() - start:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
