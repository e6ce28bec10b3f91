"""Patient-level splits: a patient's slices never fall in two parts.

The backbone report split slices 90:10 with no regard to patients, so neighbouring
slices of one brain sat on both sides; here every split is over patient ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mslesion.fileio import load_json, save_json

__all__ = ["SPLIT_MODES", "SplitConfig", "split_patients", "save_splits", "load_splits", "check_disjoint"]

SPLIT_MODES = ("holdout", "train_val_test", "kfold")


@dataclass
class SplitConfig:
    """How a dataset's patients are split (:func:`split_patients`); part of ``prep_config.json``."""

    split: str = field(default="holdout", metadata={"choices": SPLIT_MODES})
    test_fraction: float = 0.1
    val_fraction: float = 0.1
    folds: int = 5
    seed: int = 0


def _count(n: int, fraction: float, name: str) -> int:
    if not 0 <= fraction < 1:
        raise ValueError(f"{name} must be in [0, 1), not {fraction}")
    # At least one patient whenever a non-zero fraction is asked and possible.
    return min(max(int(round(n * fraction)), 1 if fraction > 0 else 0), n - 1) if n > 1 else 0


def split_patients(
    patients: list[str],
    mode: str = "holdout",
    *,
    test_fraction: float = 0.1,
    val_fraction: float = 0.1,
    k: int = 5,
    seed: int = 0,
) -> dict:
    """Split patient ids deterministically for ``seed``.

    Modes:
        ``holdout``: train/test, ``test_fraction`` of patients in test (the backbone report: 90:10).
        ``train_val_test``: three parts (the LGG encoder comparison).
        ``kfold``: ``k`` folds; fold i tests on part i and validates on part i+1 (Rondinella et al. 2023).

    Returns:
        ``{"mode", "seed", "patients", "folds": [{"train": [...], "val": [...], "test": [...]}]}``
        with ids sorted inside each part.
    """
    ids = sorted(set(map(str, patients)))
    if len(ids) != len(patients):
        raise ValueError("patient ids must be unique")
    if not ids:
        raise ValueError("no patients to split")
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    n = len(order)
    folds = []
    if mode == "holdout":
        n_test = _count(n, test_fraction, "test_fraction")
        folds.append({"train": order[n_test:], "val": [], "test": order[:n_test]})
    elif mode == "train_val_test":
        n_test = _count(n, test_fraction, "test_fraction")
        n_val = _count(n - n_test, val_fraction, "val_fraction")
        folds.append({"train": order[n_test + n_val :], "val": order[n_test : n_test + n_val], "test": order[:n_test]})
    elif mode == "kfold":
        if not 2 <= k <= n:
            raise ValueError(f"k-fold needs 2 <= k <= number of patients ({n}); got k={k}")
        parts = [list(p) for p in np.array_split(np.array(order, dtype=object), k)]
        for i in range(k):
            test, val = parts[i], parts[(i + 1) % k] if k > 2 else []
            train = [p for j, part in enumerate(parts) if j != i and (k <= 2 or j != (i + 1) % k) for p in part]
            folds.append({"train": train, "val": val, "test": test})
    else:
        raise ValueError(f"unknown split mode {mode!r}; known: {SPLIT_MODES}")
    folds = [{part: sorted(v) for part, v in f.items()} for f in folds]
    out = {"mode": mode, "seed": seed, "patients": ids, "folds": folds}
    if mode != "kfold":
        out.update({"test_fraction": test_fraction, "val_fraction": val_fraction if mode == "train_val_test" else 0.0})
    else:
        out["k"] = k
    check_disjoint(out)
    return out


def check_disjoint(splits: dict) -> None:
    """Raise ValueError if any patient appears in two parts of one fold."""
    for i, fold in enumerate(splits["folds"]):
        seen: dict[str, str] = {}
        for part, ids in fold.items():
            for pid in ids:
                if pid in seen:
                    raise ValueError(f"fold {i}: patient {pid} is in both {seen[pid]} and {part}")
                seen[pid] = part


def save_splits(path: str | Path, splits: dict) -> None:
    check_disjoint(splits)
    save_json(path, splits)


def load_splits(path: str | Path) -> dict:
    splits = load_json(path)
    check_disjoint(splits)
    return splits
