"""Duplicates, the patient-level validation carve and collision reporting."""

import pandas as pd
import pytest

from cxrlib.data.splits import assign_splits, carve_validation, resolve_duplicates


def _frame(rows: list[tuple[str, str, str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["path", "source_split", "label", "patient_id", "sha256"])


def _pool(n_patients: int = 40, per_patient: int = 2) -> pd.DataFrame:
    rows = []
    for label in ("NORMAL", "PNEUMONIA"):
        for p in range(n_patients):
            for k in range(per_patient if p % 3 == 0 else 1):
                pid = f"{label[:1]}{p:03d}"
                rows.append((f"train/{label}/{pid}-{k}.png", "train", label, pid, f"{pid}{k}"))
    return _frame(rows)


def test_duplicates_within_a_split_are_collapsed_to_the_first_path() -> None:
    images = _frame(
        [
            ("train/N/b.png", "train", "N", "b", "h1"),
            ("train/N/a.png", "train", "N", "a", "h1"),
            ("train/N/c.png", "train", "N", "c", "h2"),
        ]
    )
    kept, rejected = resolve_duplicates(images)
    assert sorted(kept["path"]) == ["train/N/a.png", "train/N/c.png"]
    assert rejected["path"].tolist() == ["train/N/b.png"]
    assert "same split" in rejected["reason"].iloc[0]


def test_cross_split_duplicates_leave_the_evaluation_side() -> None:
    images = _frame(
        [
            ("test/N/x.png", "test", "N", "x", "h1"),
            ("val/N/y.png", "val", "N", "y", "h1"),
            ("train/N/z.png", "train", "N", "z", "h1"),
        ]
    )
    kept, rejected = resolve_duplicates(images)
    assert kept["path"].tolist() == ["train/N/z.png"]
    assert set(rejected["path"]) == {"test/N/x.png", "val/N/y.png"}
    assert all("leak" in r for r in rejected["reason"])


def test_duplicates_with_conflicting_labels_are_all_rejected() -> None:
    images = _frame(
        [
            ("train/N/a.png", "train", "N", "a", "h1"),
            ("train/P/a.png", "train", "P", "a", "h1"),
        ]
    )
    kept, rejected = resolve_duplicates(images)
    assert kept.empty
    assert len(rejected) == 2 and all("ambiguous" in r for r in rejected["reason"])


def test_validation_carve_is_by_patient_stratified_and_seeded() -> None:
    pool = _pool()
    mask = carve_validation(pool, 0.2, seed=3)
    val, train = pool[mask], pool[~mask]
    assert not set(val["patient_id"]) & set(train["patient_id"])
    for label in ("NORMAL", "PNEUMONIA"):
        share = (val["label"] == label).sum() / (pool["label"] == label).sum()
        assert 0.15 <= share <= 0.3
    assert mask.equals(carve_validation(pool, 0.2, seed=3))
    assert not mask.equals(carve_validation(pool, 0.2, seed=4))


def test_a_carve_that_overshoots_on_large_patients_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two NORMAL patients of 12 images each at val_fraction 0.2: one whole patient (50 %)
    goes to validation; the log names the share and the fix."""
    rows = [
        (f"n{p}_{i}", "train", "NORMAL", f"p{p}", f"n{p}{i}") for p in (1, 2) for i in range(12)
    ]
    rows += [(f"q{p}", "train", "PNEUMONIA", f"q{p}", f"q{p}") for p in range(20)]
    with caplog.at_level("WARNING", logger="cxrlib.data.splits"):
        mask = carve_validation(_frame(rows), 0.2, seed=0)
    assert mask[:24].sum() == 12  # one patient: half the class
    assert "validation took 50% of the NORMAL training images (1 of 2 patients" in caplog.text
    assert "data.val_source: given" in caplog.text
    assert "PNEUMONIA" not in caplog.text  # 4 of 20 one-image patients: as asked


def test_carve_never_empties_a_class() -> None:
    pool = _frame(
        [
            ("a", "train", "N", "p1", "1"),
            ("b", "train", "N", "p2", "2"),
            ("c", "train", "P", "p3", "3"),
            ("d", "train", "P", "p4", "4"),
        ]
    )
    mask = carve_validation(pool, 0.9, seed=0)
    assert mask.sum() == 2  # one patient per class moves; one stays for training
    assert set(pool[~mask]["label"]) == {"N", "P"}


def test_assign_splits_merges_given_val_and_reports_test_collisions() -> None:
    images = pd.concat(
        [
            _pool(),
            _frame(
                [
                    ("val/NORMAL/v.png", "val", "NORMAL", "vpat", "v1"),
                    (
                        "test/PNEUMONIA/t.png",
                        "test",
                        "PNEUMONIA",
                        "P001",
                        "t1",
                    ),  # same ID as a train patient
                    ("test/NORMAL/u.png", "test", "NORMAL", "unew", "u1"),
                ]
            ),
        ]
    )
    result = assign_splits(
        images, val_source="carve", val_fraction=0.2, seed=0, test_id_collisions="report"
    )
    splits = result.images
    assert set(splits["split"]) == {"train", "val", "test"}
    assert splits.loc[splits["path"] == "val/NORMAL/v.png", "split"].item() in {"train", "val"}
    train_val = splits[splits["split"] != "test"]
    by_pid = train_val.groupby("patient_id")["split"].nunique()
    assert (by_pid == 1).all()  # train and val never share a patient
    assert set(result.collisions["patient_id"]) == {"P001"}
    assert len(splits) == len(images)

    excluded = assign_splits(
        images,
        val_source="carve",
        val_fraction=0.2,
        seed=0,
        test_id_collisions="exclude_from_train",
    )
    assert excluded.collisions.empty
    assert (excluded.images.groupby("patient_id")["split"].nunique() == 1).all()
    moved = excluded.rejected[excluded.rejected["reason"].str.contains("P001")]
    assert len(moved) == (images["patient_id"] == "P001").sum() - 1


def test_given_val_is_kept_as_is() -> None:
    images = _frame(
        [
            ("a", "train", "N", "p1", "1"),
            ("b", "val", "N", "p2", "2"),
            ("c", "test", "N", "p3", "3"),
        ]
    )
    result = assign_splits(
        images, val_source="given", val_fraction=0.5, seed=0, test_id_collisions="report"
    )
    assert dict(zip(result.images["path"], result.images["split"], strict=True)) == {
        "a": "train",
        "b": "val",
        "c": "test",
    }


@pytest.mark.parametrize(
    "kwargs",
    [{"val_source": "random"}, {"test_id_collisions": "drop"}],
)
def test_bad_options_name_the_config_key(kwargs) -> None:
    args = {"val_source": "carve", "val_fraction": 0.1, "seed": 0, "test_id_collisions": "report"}
    args.update(kwargs)
    with pytest.raises(ValueError, match="data\\."):
        assign_splits(_pool(), **args)
