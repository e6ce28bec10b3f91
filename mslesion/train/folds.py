"""Cross-validation training: one run per fold of a dataset's ``splits.json``, as one resumable job.

Each fold is an ordinary run (``.../fold_<k>``), so a re-run skips the folds that finished, resumes the one
that was cut short and starts the others; evaluate them together with
:func:`mslesion.evaluate.cross_validation.evaluate_folds` (Rondinella et al. 2023, section 4.2: 5 folds, mean ± SD).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from mslesion.errors import MslesionError
from mslesion.folders import DatasetFolder

__all__ = ["fold_ids", "fold_run_config", "train_folds"]


def fold_ids(dataset: str | Path, folds: str | Sequence[int]) -> list[int]:
    """The folds ``folds`` names: ``"all"`` (every fold of the dataset's splits.json) or a list of fold numbers.

    Raises:
        ValueError: a fold the dataset does not have, or a list that names one twice.
    """
    n = len(DatasetFolder.open(dataset).splits()["folds"])
    if isinstance(folds, str):
        if folds != "all":
            raise ValueError(f"folds must be 'all' or a list of fold numbers, not {folds!r}")
        return list(range(n))
    wanted = [int(k) for k in folds]
    bad = [k for k in wanted if not 0 <= k < n]
    if bad:
        raise ValueError(f"{dataset}: no fold {', '.join(map(str, bad))}; its splits.json has folds 0..{n - 1}")
    if len(set(wanted)) != len(wanted):
        raise ValueError(f"folds {wanted}: a fold is named twice")
    return wanted


def fold_run_config(config, fold: int):
    """``config`` for fold ``fold``; an explicit ``run_dir`` becomes the folder of the folds (``<run_dir>/fold_<k>``)."""
    run_dir = str(Path(config.run_dir) / f"fold_{fold}") if config.run_dir else None
    return replace(config, fold=fold, run_dir=run_dir)


def train_folds(config, folds: str | Sequence[int] = "all", trainer: Callable | None = None, **train_kwargs) -> list[Path]:
    """Train ``config`` on each of ``folds``; returns the run folders of the folds that trained (or had finished).

    A fold that fails is reported (a warning naming it and the error) and the others still train; if any failed,
    an :class:`~mslesion.errors.MslesionError` listing them is raised at the end, after the rest have run.

    Args:
        trainer: :func:`mslesion.train.training.train` (default) or :func:`mslesion.train.training3d.train_3d`.
        train_kwargs: passed on (``verbose``, ``overwrite``, ``progress``).
    """
    if trainer is None:
        from mslesion.train.training import train as trainer
    runs, failed = [], []
    for k in fold_ids(config.dataset, folds):
        print(f"fold {k}:")
        try:
            runs.append(trainer(fold_run_config(config, k), **train_kwargs))
        except (MslesionError, ValueError, OSError) as exc:
            failed.append(f"fold {k}: {exc}")
            warnings.warn(f"fold {k} failed, the others go on: {exc}", stacklevel=2)
    if failed:
        raise MslesionError(f"{len(failed)} fold(s) failed ({'; '.join(failed)}); re-run the same command to retry "
                            "them (finished folds are skipped)")  # fmt: skip
    return runs
