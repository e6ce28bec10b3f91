"""The two folders everything else reads: a prepared dataset and a run, opened and checked once.

:class:`DatasetFolder` is what ``mslesion prep`` / ``prep3d`` wrote; :class:`RunFolder` what ``mslesion train`` /
``train3d`` / ``tune`` wrote. Opening one checks that it is what it claims to be and names the folder and the
problem in one line when it is not; the file names are those of :mod:`mslesion.paths`. Writing a run folder
(claiming, locking, resuming) is :mod:`mslesion.train.runfolder`'s job.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from mslesion.errors import CorruptFileError, DataError, RunNotFoundError
from mslesion.fileio import load_json
from mslesion.paths import BEST, HISTORY, MANIFEST, PREP3D_CONFIG, PREP_CONFIG, RUN_CONFIG, SPLITS

__all__ = ["CHECKPOINTS", "DatasetFolder", "RunFolder", "read_json_object", "read_history"]

#: ``model``: the better of best and final after BN recalibration (see mslesion.train.checkpoints); runs
#: without one (3D runs, runs of earlier versions) fall back to ``best``
CHECKPOINTS = ("model", "best", "final")


def read_json_object(path: Path, remedy: str = "restore it from a copy") -> dict:
    """A JSON object from ``path``; a damaged file is a :class:`CorruptFileError` naming it."""
    try:
        value = load_json(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptFileError(path, f"not valid JSON ({exc}); {remedy}") from exc
    if not isinstance(value, dict):
        raise CorruptFileError(path, f"does not hold a JSON object; {remedy}")
    return value


@dataclass(frozen=True)
class DatasetFolder:
    """A prepared dataset: ``splits.json`` and a preparation record (2D slices or 3D volumes)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def open(cls, path: str | Path, record: str | None = None) -> DatasetFolder:
        """Check that ``path`` is a prepared dataset (with preparation record ``record``, if given).

        Raises:
            DataError: no such folder, or it lacks the record or ``splits.json``.
        """
        path = Path(path)
        if not path.is_dir():
            raise DataError(path, "no such dataset folder; prepare one first (mslesion prep / prep3d)")
        records = (record,) if record else (PREP_CONFIG, PREP3D_CONFIG)
        missing = [] if any((path / r).is_file() for r in records) else [" or ".join(records)]
        missing += [] if (path / SPLITS).is_file() else [SPLITS]
        if missing:
            raise DataError(path, f"not a prepared dataset (no {' or '.join(missing)}); prepare it first "
                            "(mslesion prep / prep3d)")  # fmt: skip
        return cls(path)

    @property
    def kind(self) -> str:
        """``2d`` (slices from ``mslesion prep``) or ``3d`` (whole volumes from ``prep3d``)."""
        return "2d" if (self.path / PREP_CONFIG).is_file() else "3d"

    def prep_config(self) -> dict:
        return read_json_object(self.path / (PREP_CONFIG if self.kind == "2d" else PREP3D_CONFIG),
                                "prepare the dataset again")  # fmt: skip

    def splits(self) -> dict:
        from mslesion.data.splits import load_splits

        return load_splits(self.path / SPLITS)

    def patients(self, part: str, fold: int = 0) -> list[str]:
        """Patient ids of ``part`` (train/val/test) in fold ``fold``."""
        folds = self.splits()["folds"]
        if not 0 <= fold < len(folds):
            raise ValueError(f"fold {fold} does not exist; the dataset has {len(folds)}")
        return list(folds[fold][part])

    def manifest(self):
        """``manifest.csv`` as a DataFrame (patient ids kept as strings)."""
        import pandas as pd

        return pd.read_csv(self.path / MANIFEST, dtype={"patient": str})


def read_history(run: str | Path):
    """A run's ``history.csv`` as a DataFrame, one row per epoch (duplicates from a resume dropped)."""
    import pandas as pd

    history = pd.read_csv(Path(run) / HISTORY)
    return history.drop_duplicates("epoch", keep="last").sort_values("epoch").reset_index(drop=True)


@dataclass(frozen=True)
class RunFolder:
    """A run: ``config.json`` and whatever the run has written so far (checkpoints, history, evaluations).

    ``RunFolder(path)`` only names the folder; :meth:`open` (or the first use of :attr:`config`) checks it.
    """

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def open(cls, path: str | Path) -> RunFolder:
        """The run folder ``path``, checked: it exists and holds a readable ``config.json``."""
        run = cls(Path(path))
        run.config  # noqa: B018 - reading it is the check
        return run

    @cached_property
    def config(self) -> dict:
        """``config.json``, read once.

        Raises:
            RunNotFoundError: no such folder, or no ``config.json`` in it (not a run folder).
            CorruptFileError: ``config.json`` is not valid JSON.
        """
        if not self.path.is_dir():
            what = "is a file, not a run folder" if self.path.exists() else "no such run folder"
            raise RunNotFoundError(self.path, f"{what}; give a folder written by mslesion train")
        if not (self.path / RUN_CONFIG).is_file():
            raise RunNotFoundError(self.path, "not a run folder (no config.json); give a folder written by mslesion train")
        return read_json_object(self.path / RUN_CONFIG, "restore it from a copy of the run")

    @property
    def kind(self) -> str:
        """``2d`` (mslesion train), ``3d`` (train3d, patch models) or ``tuning`` (a learning-rate search)."""
        if "patch" in self.config:
            return "3d"
        return "tuning" if "tuner" in self.config else "2d"

    @property
    def dataset(self) -> Path:
        return Path(str(self.config.get("dataset", "")))

    @property
    def fold(self) -> int:
        return int(self.config.get("fold", 0))

    def prep_config(self) -> dict:
        """The preparation the run was trained on: its own copy, else its dataset's.

        Raises:
            RunNotFoundError: neither the run nor its dataset holds one.
        """
        record = PREP3D_CONFIG if self.kind == "3d" else PREP_CONFIG
        for folder in (self.path, self.dataset):
            if (folder / record).is_file():
                return read_json_object(folder / record, "restore it from a copy of the run")
        raise RunNotFoundError(self.path, f"no {record} in the run and its dataset {self.dataset} is gone; "
                                          f"copy the dataset's {record} into the run folder")  # fmt: skip

    def checkpoint(self, name: str = "model") -> Path:
        """The file of checkpoint ``name``; ``model`` falls back to ``best.keras`` where a run has none."""
        if name not in CHECKPOINTS:
            raise ValueError(f"checkpoint must be one of {CHECKPOINTS}, not {name!r}")
        path = self.path / f"{name}.keras"
        return path.with_name(BEST) if name == "model" and not path.is_file() else path

    def require_checkpoint(self, name: str = "model") -> Path:
        """:meth:`checkpoint`, refusing one that is not there with what the run does hold."""
        path = self.checkpoint(name)
        if not path.is_file():
            have = sorted(p.name for p in self.path.glob("*.keras"))
            other = next((c for c in CHECKPOINTS if c != path.stem and f"{c}.keras" in have), None)
            hint = f"use --checkpoint {other}" if other else "train the run (again) to the end"
            raise RunNotFoundError(path, f"no such checkpoint (the run holds {', '.join(have) or 'none'}); {hint}")
        return path

    def history(self):
        """``history.csv`` as a DataFrame (:func:`read_history`)."""
        return read_history(self.path)

    @contextmanager
    def locked(self) -> Iterator[RunFolder]:
        """Hold the run's lock (the one training holds): a second writer fails at once."""
        from mslesion.outputs import locked

        with locked(self.path):
            yield self
