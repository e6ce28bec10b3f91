"""One training config -> one run folder (``mslesion train``).

Run folder::

    <runs>/<dataset>/<model>__<loss>__<tag>/fold_<k>/
        config.json        the resolved TrainConfig, plus what the runner decided
        prep_config.json   how the dataset's slices were prepared (prediction repeats it)
        environment.json   versions, devices, strategy, dtype policy
        history.csv        per epoch: loss, accuracy, dice, iou (train and val), lr, seconds, img/s
        summary.txt        model summary with parameter counts
        best.keras         the epoch with the best val_dice (BN statistics as trained)
        final.keras        last epoch, BN statistics re-estimated on training batches
        model.keras        what evaluate/predict use: the better of the best epoch and the last, both
                           recalibrated, by inference-mode val Dice (mslesion.train.checkpoints)
        final_eval.json    both candidates' val metrics in inference and training mode, the choice, BN warnings
        state.json         the options the run was started with and how far it got (training/fitted/done)
        backup/            while fitting: the last two end-of-epoch backups (weights with optimizer
                           state, epoch, best val_dice, callback state), epoch_<n>.weights.h5 + .json
        fitted.weights.h5  between the end of the fit and final.keras: the fitted weights

A run folder is claimed (:func:`mslesion.outputs.claim_dir`) and locked for the
whole run, so two processes never write the same one. Every file in it is
written under a temporary name and renamed, so a kill at any moment loses at
most the epoch in flight: re-running the same options resumes from the newest
backup that loads (an older one when the newest is damaged), and once the fit
is done only the phases after it are redone. A finished run is left alone;
other options for an existing run are an error (``overwrite`` starts afresh).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from mslesion import __version__, outputs
from mslesion.errors import DataError
from mslesion.evaluate.metrics import Confusion, compute_dice
from mslesion.fileio import atomic_path, crash_point, load_json, save_json, save_text
from mslesion.outputs import OutputError
from mslesion.paths import (
    BEST,
    ENVIRONMENT,
    FINAL,
    FINAL_EVAL,
    HISTORY,
    PREP_CONFIG,
    RUN_CONFIG,
    SPLITS,
    STATE,
    SUMMARY,
)
from mslesion.train import tensorboard_logs
from mslesion.train.augmentation import augment_in_train_step
from mslesion.train.datasets import Augmentation, load_slice_set, make_dataset, split_patients_of

__all__ = ["TrainConfig", "train", "run_dir_for", "read_history", "epoch_study", "RunConfigError", "open_run",
           "check_run_inputs", "config_differences", "RUN_FILES", "write_run_records"]  # fmt: skip


@dataclass
class TrainConfig:
    """Everything that decides a training run; saved as ``config.json``.

    Defaults follow the backbone report's section 5.2: Adam, learning rate 1e-3, binary
    cross-entropy, accuracy + Dice + IoU tracked on train and validation.
    """

    dataset: str
    model: str = "kuc.unet"
    model_params: dict = field(default_factory=dict)
    loss: str = "bce"
    loss_params: dict = field(default_factory=dict)
    learning_rate: float = 1e-3
    batch_size: int = 8
    epochs: int = 50
    fold: int = 0
    seed: int = 0
    augment: bool = False
    balance: bool = False
    reduce_lr_patience: int | None = None  # the 3DR2AUNet paper (2024): ReduceLROnPlateau(factor=0.5)
    reduce_lr_factor: float = 0.5
    early_stopping_patience: int | None = None
    max_minutes: float | None = None  # stop before the epoch that would pass this training time (epochs stays the cap)
    lesion_slices_only: bool = False  # train on slices with lesion only (the backbone report); validation keeps every slice
    val_fraction: float = 0.1  # carve validation patients from train when the split has none
    cache_gb: float = 4.0  # slices smaller than this are read into memory once; larger stay memory-mapped
    strategy: str = "auto"
    mixed_precision: bool = False  # notebooks: runtime.auto_mixed_precision() (GPUs of compute capability >= 7, TPU)
    jit_compile: bool = False  # XLA; see benchmarks/bench_train.py --jit for what it buys here
    # how batches are gathered (mslesion.train.runtime.input_pipeline): auto, graph (tf.gather from host memory) or
    # generator (Python, from memmaps); the batches are the same, only the speed differs
    input_pipeline: str = "auto"
    # where augmentation runs (mslesion.train.runtime.augment_place): auto, host (tf.data map) or device (train step)
    augment_on: str = "auto"
    tensorboard: bool = True  # TensorBoard logs in <run>/tensorboard (mslesion.train.tensorboard_logs)
    deterministic: bool = False  # repeat bit for bit on this machine (see mslesion.train.runtime.set_deterministic)
    bn_horizon: float = 10.0  # see mslesion.train.batchnorm; 0 disables momentum capping
    bn_max_momentum: float = 0.9  # ceiling of trainable BN momenta (mslesion.train.batchnorm.MAX_MOMENTUM)
    recalibrate_bn: bool = True
    recalibration_batches: int | None = None  # None: one epoch of full batches, at most 200
    threshold: float = 0.5
    runs_root: str = "runs"
    tag: str = "base"
    run_dir: str | None = None
    recipe: str | None = None  # the named options (mslesion.study.experiments.recipe) the others started from, if any

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return config_from_dict(cls, d, "training")


def config_from_dict(cls, d: dict, what: str):
    """Build the config dataclass ``cls`` from ``d``, refusing unknown keys (typos)."""
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} options {sorted(unknown)}")
    return cls(**d)


def run_dir_for(config) -> Path:
    """``<runs>/<dataset>/<model>__<loss>__<tag>/fold_<k>`` unless ``run_dir`` is set (train and tune configs)."""
    if config.run_dir:
        return Path(config.run_dir)
    return Path(config.runs_root) / Path(config.dataset).name / f"{config.model}__{config.loss}__{config.tag}" / (
        f"fold_{config.fold}"
    )


def _parts(config: TrainConfig) -> tuple[list[str], list[str], bool]:
    train = split_patients_of(config.dataset, "train", config.fold)
    val = split_patients_of(config.dataset, "val", config.fold)
    if val:
        return train, val, False
    if config.val_fraction == 0:
        # tiny cohorts only: curves and best.keras then describe the training patients themselves
        warnings.warn(f"{config.dataset}: no validation patients (val_fraction=0); validating on the training patients",
                      stacklevel=3)  # fmt: skip
        return train, list(train), False
    # the backbone report validated on part of its training data; carve whole patients
    rng = np.random.default_rng(config.seed)
    n_val = max(1, int(round(len(train) * config.val_fraction))) if len(train) > 1 else 0
    if n_val == 0:
        raise ValueError(f"{config.dataset}: one training patient and no validation part; cannot validate "
                         "(val_fraction=0, mslesion train --val-fraction 0, validates on the training patient itself)")  # fmt: skip
    chosen = set(rng.choice(sorted(train), size=n_val, replace=False).tolist())
    return [p for p in train if p not in chosen], sorted(chosen), True


_clock = time.perf_counter  # tests replace it


class TimeBudget:
    """Stops the fit before the epoch that would take the training time past ``minutes``.

    The time of epochs done before a resume (``history.csv``'s ``seconds``) counts too, so a
    resumed run keeps the budget it was started with.

    The BN momentum cap (:func:`mslesion.train.batchnorm.adapt_momentum`) is set before the fit from
    ``epochs``, which a budget usually cuts short. Above about 100 steps the ceiling
    (``bn_max_momentum``) decides it anyway; for shorter runs, after the second epoch of the fit,
    when one epoch's time is known, the cap is set again for the epochs the budget leaves
    (``horizon``; 0: never), and the training step is rebuilt to use it. ``recapped`` holds
    {layer: momentum} changed.
    """

    def __new__(cls, minutes: float, run: Path, steps_per_epoch: int = 0, max_epochs: int = 0,
                horizon: float = 0.0, ceiling: float = 0.9):  # fmt: skip
        import keras

        from mslesion.train import batchnorm

        class _Budget(keras.callbacks.Callback):
            recapped: dict = {}

            def on_train_begin(self, logs=None):
                self.earlier = _seconds_done(run)
                self.start = self.last = _clock()
                self.epochs = 0

            def on_epoch_end(self, epoch, logs=None):
                self.epochs += 1
                now = _clock()
                spent, this_epoch, self.last = now - self.start, now - self.last, now
                left = minutes * 60 - self.earlier - spent
                if spent / self.epochs > left:
                    self.model.stop_training = True
                elif horizon and steps_per_epoch and self.epochs == 2:
                    # epoch 1 includes tracing; epoch 2 is the steady-state time
                    epochs = min(max_epochs - epoch - 1, int(left // max(this_epoch, 1e-9))) + epoch + 1
                    self.recapped = batchnorm.adapt_momentum(self.model, epochs * steps_per_epoch, horizon, ceiling)
                    if self.recapped:
                        self.model.make_train_function(force=True)

        return _Budget()


def _seconds_done(run: Path) -> float:
    path = run / HISTORY
    if not path.is_file():
        return 0.0
    history = read_history(run)
    return float(history.seconds.sum()) if "seconds" in history else 0.0


class EpochTimer:
    """Adds ``seconds``, ``img_per_s`` (training images) and ``learning_rate`` to each epoch's logs."""

    def __new__(cls, n_images: int):
        import keras

        class _Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                seconds = time.perf_counter() - self.start
                if logs is not None:
                    logs["seconds"] = seconds
                    logs["img_per_s"] = n_images / seconds if seconds > 0 else float("nan")
                    logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

        return _Timer()


def read_history(run_dir: str | Path):
    """``history.csv`` as a DataFrame, one row per epoch (duplicates from a resume dropped)."""
    import pandas as pd

    history = pd.read_csv(Path(run_dir) / HISTORY)
    return history.drop_duplicates("epoch", keep="last").sort_values("epoch").reset_index(drop=True)


def epoch_study(run_dir: str | Path, every: int = 25, metric: str = "val_dice") -> list[dict]:
    """The backbone report's section 5.2.1 from one long run: ``metric`` at epochs every, 2*every, ... (1-based)."""
    history = read_history(run_dir)
    rows = []
    for epoch in range(every, len(history) + 1, every):
        row = history.iloc[epoch - 1]
        rows.append({"epoch": epoch, metric: float(row[metric]), "best_so_far": float(history[metric][:epoch].max())})
    return rows


# --------------------------------------------------------------------- run folders: claimed, locked, resumable

# fileio's temporary names (.<name>.mslesion-XXXXXXXX.tmp...), which a kill leaves behind
_TEMP = r"\.(?P<name>.+)\.mslesion-[A-Za-z0-9_]{8}\.(?:tmp|old)(?:\..*)?"
#: top-level names a run folder may hold (regular expressions); a folder holding anything else is refused
RUN_FILES = (
    r"config\.json", r"prep_config\.json", r"prep3d_config\.json", r"environment\.json", r"history\.csv",
    r"summary\.txt", r"best\.keras", r"final\.keras", r"model\.keras", r"final_eval\.json", r"state\.json", r"fitted\.weights\.h5",
    r"backup", r"tensorboard",
)  # fmt: skip
# written into a run by mslesion evaluate: eval_<part>/, its lock and its temporaries
_RUN_EXTRAS = (r"eval_.+", r"\.eval_.+\.lock", _TEMP)
_BACKUP_FILES = (r"epoch_\d+\.weights\.h5", r"epoch_\d+\.json", _TEMP)
_EVAL_FILES = (r"per_patient\.csv", r"lesions\.csv", r"slices\.csv", r"failures\.csv", r"summary\.json",
               r"examples\.npz", r"masks", r"\.mslesion\.json", _TEMP)  # fmt: skip
# options that change how a run executes, not what it computes: a resume may change them
_RUNTIME_FIELDS = frozenset({"cache_gb", "workers", "input_pipeline", "augment_on", "tensorboard"})
# what Keras callbacks reset in on_train_begin and a resume must give back
_CALLBACK_STATE = {"ReduceLROnPlateau": ("best", "wait", "cooldown_counter"),
                   "EarlyStopping": ("best", "wait", "best_epoch", "stopped_epoch")}  # fmt: skip


class RunConfigError(OutputError):
    """A run folder already holds a run started with other options."""


def _crash(name: str, epoch: int | None = None) -> None:
    """Crash point ``train.<name>``; with ``epoch`` (0-based, as in history.csv) also ``train.<name>@<epoch>``."""
    crash_point(f"train.{name}")
    if epoch is not None:
        crash_point(f"train.{name}@{epoch}")


def _matches(name: str, patterns) -> bool:
    return any(re.fullmatch(p, name) for p in patterns)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _listed(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def write_run_records(run: Path, dataset: str, record: str, resolved: dict, environment: dict, model) -> None:
    """Write a run's config.json, environment.json, summary.txt and a copy of the dataset's ``record`` (2D and 3D).

    The copied record keeps the run usable for prediction without its dataset folder.
    """
    save_json(run / RUN_CONFIG, resolved)
    save_json(run / ENVIRONMENT, environment)
    with atomic_path(run / record) as tmp:
        shutil.copyfile(Path(dataset) / record, tmp)
    lines: list[str] = []
    model.summary(print_fn=lambda line, **_: lines.append(line))
    save_text(run / SUMMARY, "\n".join(lines) + "\n")


def check_run_inputs(config, record: str = PREP_CONFIG) -> None:
    """Fail before anything is written: a prepared dataset (``record`` and ``splits.json``), known model and loss.

    Raises:
        DataError: the dataset folder is missing or not prepared.
        UnknownModelError, UnknownOptionError: an unknown model or loss name (both KeyErrors;
            the message lists the known ones).
    """
    import difflib

    from mslesion.errors import UnknownOptionError
    from mslesion.models.registry import model_spec
    from mslesion.train.losses import LOSSES

    root = Path(config.dataset)
    if not root.is_dir():
        raise DataError(root, "no such dataset folder; prepare one first (mslesion prep / prep3d)")
    missing = [name for name in (record, SPLITS) if not (root / name).is_file()]
    if missing:
        raise DataError(root, f"not a prepared dataset (no {' or '.join(missing)}); prepare it first "
                        "(mslesion prep / prep3d)")  # fmt: skip
    model_spec(config.model)
    if config.loss not in LOSSES:
        close = difflib.get_close_matches(str(config.loss), sorted(LOSSES), n=2)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise UnknownOptionError(f"unknown loss {config.loss!r}; {hint}known: {', '.join(sorted(LOSSES))}")


def _user_config(config) -> dict:
    """The options of ``config`` as JSON values, paths resolved: what a re-run must repeat to resume."""
    d = asdict(config)
    d["dataset"] = str(Path(config.dataset).resolve())
    d["runs_root"] = str(Path(config.runs_root).resolve())
    d["run_dir"] = str(Path(config.run_dir).resolve()) if config.run_dir else None
    return json.loads(json.dumps(d, default=str))


def config_differences(old: dict, new: dict, cls) -> list[str]:
    """``"key: old -> new"`` for each option of the config dataclass ``cls`` that differs.

    Both are :func:`_user_config` dicts; a key missing from ``old`` (an option added
    since) counts as its default. ``run_dir`` is not compared (the folder is the same
    however it was named), nor ``runs_root`` when a ``run_dir`` names the folder, nor
    options that only change how the run executes (``cache_gb``, ``workers``).
    """
    defaults = {f.name: f.default if f.default is not MISSING else f.default_factory()
                for f in fields(cls) if f.default is not MISSING or f.default_factory is not MISSING}  # fmt: skip
    defaults = json.loads(json.dumps(defaults, default=str))
    skip = set(_RUNTIME_FIELDS) | {"run_dir"}
    if old.get("run_dir") or new.get("run_dir"):
        skip.add("runs_root")
    diffs = []
    for f in fields(cls):
        a, b = old.get(f.name, defaults.get(f.name)), new.get(f.name, defaults.get(f.name))
        if f.name not in skip and a != b:
            diffs.append(f"{f.name}: {a!r} -> {b!r}")
    return diffs


def _read_state(run: Path) -> dict | None:
    path = run / STATE
    if not path.is_file():
        return None
    try:
        state = load_json(path)
    except (OSError, ValueError) as exc:
        raise OutputError(f"{path}: unreadable ({_short(exc)}); pass --overwrite to start the run afresh") from None
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict) or "phase" not in state:
        raise OutputError(f"{path}: not a run state mslesion wrote; pass --overwrite to start the run afresh")
    return state


def _remove_stale_temps(run: Path) -> None:
    """Remove a killed run's temporaries from the run folder and ``backup/``.

    In the run folder only temporaries of the run's own files go: an evaluation
    running beside the run (its ``.eval_<part>...`` folders) is left alone.
    """
    backup = run / "backup"
    if backup.is_dir() and not backup.is_symlink():
        outputs.remove_stale_temps(backup)
    for p in run.iterdir():
        m = re.fullmatch(_TEMP, p.name)
        if m and _matches(m.group("name"), RUN_FILES) and p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)


def _check_backup(run: Path) -> None:
    backup = run / "backup"
    if not os.path.lexists(backup):
        return
    if not backup.is_dir() or backup.is_symlink():
        raise OutputError(f"{backup}: not a folder mslesion wrote; move it out first")
    foreign = sorted(p.name for p in backup.iterdir() if not _matches(p.name, _BACKUP_FILES))
    if foreign:
        raise OutputError(f"{backup}: holds files mslesion did not write ({_listed(foreign)}); move them out first")


def _remove_backups(run: Path) -> None:
    backup = run / "backup"
    if not backup.is_dir():
        return
    for p in backup.iterdir():
        if _matches(p.name, _BACKUP_FILES) and p.is_file():
            p.unlink()
    with suppress(OSError):  # still holds something: left as it is
        backup.rmdir()


def _clear_run(run: Path) -> None:
    """Remove what an earlier run wrote in ``run`` (``overwrite``), its evaluations included; nothing else."""
    _remove_backups(run)
    tensorboard_logs.remove_folder(run)
    for p in run.iterdir():
        if p.name in ("backup", tensorboard_logs.FOLDER):
            continue
        if _matches(p.name, RUN_FILES) and (p.is_file() or p.is_symlink()):
            p.unlink()
        elif re.fullmatch(r"eval_.+", p.name) and p.is_dir() and not p.is_symlink():
            # an evaluation of the model being replaced; only if it holds nothing but evaluate's own files
            if all(_matches(q.name, _EVAL_FILES) for q in p.iterdir()):
                shutil.rmtree(p)
            else:
                warnings.warn(f"{p}: holds files mslesion evaluate did not write; left in place", stacklevel=4)


def _unclaim(run: Path) -> None:
    """Remove a run folder this call created, when it failed before the run started (it holds only the marker)."""
    names = {p.name for p in run.iterdir()} if run.is_dir() else {None}
    if names <= {outputs.MARKER}:
        (run / outputs.MARKER).unlink(missing_ok=True)
        with suppress(OSError):
            run.rmdir()


@contextmanager
def open_run(config, kind: str, overwrite: bool = False) -> Iterator[tuple[Path, dict | None]]:
    """Claim and lock the run folder of ``config`` for the whole run; yields ``(run, state)``.

    ``state`` is the folder's ``state.json``: None for a new run (or, with
    ``overwrite``, once the earlier run's files are removed). A killed run's
    temporaries are removed first. A folder this call created is removed again
    when the run fails before it starts (a model option that does not build).

    Raises:
        OutputError: the folder holds files mslesion did not write, or overlaps the dataset.
        OutputLockedError: another process is writing the same folder.
        RunConfigError: it holds a run started with other options (and not ``overwrite``).
    """
    path = run_dir_for(config)
    new = not os.path.lexists(path)
    run = outputs.claim_dir(path, kind, known=RUN_FILES + _RUN_EXTRAS, inputs=[config.dataset])
    with outputs.locked(run):
        try:
            _remove_stale_temps(run)
            _check_backup(run)
            tensorboard_logs.check_folder(run)
            state = _read_state(run)
            if overwrite:
                _clear_run(run)
                state = None
            elif state is None:
                left = sorted(p.name for p in run.iterdir() if _matches(p.name, RUN_FILES))
                if left:
                    raise OutputError(f"{run}: holds files of an earlier run ({_listed(left)}) but no state.json; "
                                      "pass --overwrite to start the run afresh")  # fmt: skip
            else:
                diffs = config_differences(state["config"], _user_config(config), type(config))
                if diffs:
                    raise RunConfigError(f"{run}: holds a run started with other options ({'; '.join(diffs)}); "
                                         "repeat them to resume it, or pass --overwrite to start it afresh")
            yield run, state
        except BaseException:
            if new and not (run / STATE).exists():
                _unclaim(run)
            raise


def _finished(run: Path, state: dict | None) -> bool:
    """True (and says so) when ``run`` is a finished run: it is then left alone."""
    if state is None or state.get("phase") != "done":
        return False
    if not (run / FINAL).is_file():
        raise OutputError(f"{run}: state.json says the run finished but final.keras is missing; "
                          "pass --overwrite to train it afresh")  # fmt: skip
    print(f"{run}: already finished ({state.get('fit_epochs')} epochs); left as it is "
          "(pass --overwrite to train it afresh)")  # fmt: skip
    return True


def _started(run: Path, config, kind: str, state: dict | None) -> dict:
    """The run's state; a new run's is written first, so the folder records its options before anything else."""
    if state is None:
        state = {"kind": kind, "phase": "training", "config": _user_config(config), "mslesion_version": __version__}
        save_json(run / STATE, state)
    return state


def _load_weights(model, path: Path) -> None:
    """Load weights (and optimizer state) from ``path``; on failure the model is left as it was."""
    scope = getattr(model, "distribute_strategy", None)
    with scope.scope() if scope is not None else nullcontext():
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)  # so the optimizer state in the file has a home
        variables = list(model.weights) + (list(model.optimizer.variables) if model.optimizer is not None else [])
        saved = [v.numpy() for v in variables]
        try:
            model.load_weights(path)
        except BaseException:
            for v, value in zip(variables, saved):  # a file damaged half-way may have loaded some variables
                v.assign(value)
            raise


def _generations(backup: Path) -> list[int]:
    """Epoch counts of the complete backups in ``backup`` (those whose record was written), oldest first."""
    if not backup.is_dir():
        return []
    found = (re.fullmatch(r"epoch_(\d+)\.json", p.name) for p in backup.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def _generation(backup: Path, n: int) -> tuple[Path, Path]:
    return backup / f"epoch_{n:04d}.weights.h5", backup / f"epoch_{n:04d}.json"


def _save_backup(run: Path, model, n: int, info: dict) -> None:
    """Back up the state after ``n`` epochs: weights with optimizer state, then the record; keeps the one before."""
    backup = run / "backup"
    weights, record = _generation(backup, n)
    with atomic_path(weights) as tmp:
        model.save_weights(tmp)
        _crash("backup_weights", n - 1)
    _crash("backup_state", n - 1)
    # the record is written last: a backup without one is incomplete and never loaded
    save_json(record, {**info, "epoch": n, "weights": weights.name, "weights_bytes": weights.stat().st_size})
    older = [g for g in _generations(backup) if g < n]
    keep = {n, max(older)} if older else {n}
    for p in backup.iterdir():
        m = re.fullmatch(r"epoch_(\d+)\.(?:weights\.h5|json)", p.name)
        if m and int(m.group(1)) not in keep:
            p.unlink(missing_ok=True)


def _restore_backup(run: Path, model) -> dict | None:
    """Load the newest backup of ``run`` that loads into ``model``; returns its record, or None (start afresh).

    A damaged newer backup is reported (a warning naming it) and removed; the run
    goes on from the one before.
    """
    backup = run / "backup"
    found = _generations(backup)
    for n in reversed(found):
        weights, record = _generation(backup, n)
        bad = record
        try:
            info = load_json(record)
            bad = weights
            if weights.stat().st_size != info["weights_bytes"]:
                raise ValueError(f"{weights.stat().st_size} bytes where {info['weights_bytes']} were written")
            _load_weights(model, weights)
        except Exception as exc:  # noqa: BLE001 - whatever h5py, Keras or json say, this backup is unusable
            warnings.warn(f"{bad}: damaged backup of epoch {n}, does not load ({_short(exc)}); "
                          "resuming from the backup before it", stacklevel=3)  # fmt: skip
            continue
        for m in found:
            if m > n:
                for p in _generation(backup, m):
                    p.unlink(missing_ok=True)
        return info
    if found:
        warnings.warn(f"{backup}: no backup loads; the fit starts again at epoch 1", stacklevel=3)
    return None


def _best_so_far(run: Path, info: dict | None) -> tuple[float, int | None]:
    """The best val_dice to beat: the backup's, provided best.keras still loads; else -inf (re-made next epoch)."""
    from mslesion.models import load_model

    path = run / BEST
    if not info or info.get("best") is None or not path.is_file():
        return -math.inf, None
    try:
        load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - a file that does not load is no checkpoint, whatever the reason
        warnings.warn(f"{path}: does not load ({_short(exc)}); removed, it is re-made from the next epoch",
                      stacklevel=3)  # fmt: skip
        path.unlink()
        return -math.inf, None
    return float(info["best"]), info.get("best_epoch")


def _history_before(run: Path, epoch: int) -> tuple[list[str], list[dict]]:
    """``history.csv``'s header and its complete rows of the epochs before ``epoch`` (a resume redoes the rest)."""
    path = run / HISTORY
    if not path.is_file():
        return [], []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        rows: dict[int, dict] = {}
        for row in reader:
            try:
                e = int(row.get("epoch") or "")
            except ValueError:
                continue
            if e < epoch and None not in row and None not in row.values():  # not a row cut short or run on
                rows[e] = row
    return header, [rows[e] for e in sorted(rows)]


def _write_history(run: Path, header: list[str], rows: list[dict]) -> None:
    path = run / HISTORY
    if not header:
        path.unlink(missing_ok=True)
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n", extrasaction="ignore", restval="NA")
    writer.writeheader()
    writer.writerows(rows)
    save_text(path, buf.getvalue())


def _csv_value(value):
    if isinstance(value, (bool, int, float, np.number)) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return float(value)
    return str(value)


def _callback_state(callback) -> dict:
    state = {}
    for key in _CALLBACK_STATE.get(type(callback).__name__, ()):
        value = getattr(callback, key, None)
        state[key] = int(value) if isinstance(value, (int, np.integer)) else (
            float(value) if isinstance(value, (float, np.floating)) else value)  # fmt: skip
    return state


def _keeper(run: Path, info: dict | None, stateful: list, header: list[str], rows: list[dict], best: float,
            best_epoch: int | None):  # fmt: skip
    """The callback that makes a fit resumable: at each epoch's end, in this order and each written atomically,
    the history row, best.keras on a val_dice improvement, and a backup. Runs after every other callback."""
    import keras

    class _Keeper(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.best, self.best_epoch, self.done = best, best_epoch, None

        def on_train_begin(self, logs=None):
            # Keras callbacks reset themselves in their own on_train_begin, which ran before this one
            saved = (info or {}).get("callbacks", {})
            for callback in stateful:
                for key, value in saved.get(type(callback).__name__, {}).items():
                    setattr(callback, key, value)

        def on_epoch_end(self, epoch, logs=None):
            logs = dict(logs or {})
            if not header:
                header.extend(["epoch", *sorted(logs)])
            header.extend(k for k in sorted(logs) if k not in header)
            rows.append({"epoch": epoch, **{k: _csv_value(v) for k, v in logs.items()}})
            _write_history(run, header, rows)
            _crash("after_history", epoch)
            value = logs.get("val_dice")
            if value is not None and np.isfinite(value) and float(value) > self.best:
                with atomic_path(run / BEST) as tmp:
                    self.model.save(tmp)
                    _crash("best_checkpoint", epoch)
                self.best, self.best_epoch = float(value), epoch
            self.done = epoch + 1
            _save_backup(run, self.model, epoch + 1, {
                "best": self.best if np.isfinite(self.best) else None, "best_epoch": self.best_epoch,
                "stop_training": bool(self.model.stop_training),
                "callbacks": {type(c).__name__: _callback_state(c) for c in stateful},
                "data_epoch": epoch + 1,  # epochs of training data drawn: the seeded order of the next is (seed, this)
            })  # fmt: skip
            _crash("after_backup", epoch)

    return _Keeper()


def _fit_resumably(run: Path, model, data, val_data, epochs: int, callbacks: list, verbose: int,
                   skip_data: Callable[[int], None] | None = None, **fit_kwargs) -> int:  # fmt: skip
    """Fit ``model`` from the newest backup of ``run`` that loads (or from scratch); returns the epochs done.

    ``history.csv`` is first cut back to the epochs the backup covers. ``skip_data(n)``
    advances the training data to epoch ``n`` when the data cannot be told its epoch.
    """
    info = _restore_backup(run, model)
    start = int(info["epoch"]) if info else 0
    header, rows = _history_before(run, start)
    _write_history(run, header, rows)
    best, best_epoch = _best_so_far(run, info)
    if info and (start >= epochs or info.get("stop_training")):
        return start  # killed after the last epoch's backup, before the fit was recorded as done
    if start:
        print(f"{run}: resuming at epoch {start + 1} of {epochs}")
        if skip_data is not None:
            skip_data(int(info.get("data_epoch", start)))
    stateful = [c for c in callbacks if type(c).__name__ in _CALLBACK_STATE]
    keeper = _keeper(run, info, stateful, header, rows, best, best_epoch)
    model.fit(data, validation_data=val_data, epochs=epochs, initial_epoch=start, callbacks=[*callbacks, keeper],
              verbose=verbose, **fit_kwargs)  # fmt: skip
    return keeper.done or start


def _skip_epochs(dataset, n: int) -> None:
    """Advance :func:`make_dataset`'s seeded epoch counter by ``n``, so a resumed fit draws each epoch's own order."""
    for _ in range(n):
        iterator = iter(dataset)
        next(iterator)  # the generator draws an epoch's order when it starts: once per iterator
        del iterator


def _fitted(run: Path, model, state: dict, epochs_done: int) -> dict:
    """Record the end of the fit: its weights, then the state; the backups go (the fit is never repeated)."""
    with atomic_path(run / "fitted.weights.h5") as tmp:
        model.save_weights(tmp)
        _crash("fitted_weights")
    state = {**state, "phase": "fitted", "fit_epochs": epochs_done}
    save_json(run / STATE, state)
    _remove_backups(run)
    _crash("after_fit")
    return state


def _load_fitted(run: Path, model) -> None:
    path = run / "fitted.weights.h5"
    try:
        _load_weights(model, path)
    except Exception as exc:  # noqa: BLE001
        raise OutputError(f"{path}: the fitted weights do not load ({_short(exc)}); "
                          "pass --overwrite to train the run afresh") from None  # fmt: skip
    print(f"{run}: the fit is done; finishing the run")


def _save_model(model, path: Path, point: str) -> None:
    with atomic_path(path) as tmp:
        model.save(tmp)
        _crash(point)


def _done(run: Path, state: dict) -> None:
    save_json(run / STATE, {**state, "phase": "done"})
    (run / "fitted.weights.h5").unlink(missing_ok=True)


def train(config: TrainConfig | dict, verbose: int = 2, *, overwrite: bool = False, progress=None) -> Path:
    """Train one model on one fold; returns the run folder (see module doc).

    Re-running the same options resumes an unfinished run (at most the epoch in
    flight is redone; after the fit, only the phases after it) and leaves a
    finished one alone. The dataset, model and loss names are checked before
    anything is written.

    Args:
        overwrite: start the run afresh: what an earlier run wrote in the folder is
            removed first (never files mslesion did not write: those are refused).
        progress: a :class:`mslesion.progress.JobProgress` of the job this run is part of:
            one line per epoch with the scores and the run's and job's ETA (Keras' own
            output is then off).

    Raises:
        OutputError: the run folder holds files mslesion did not write, or overlaps the dataset.
        OutputLockedError: another process is writing the same run folder.
        RunConfigError: the folder holds a run started with other options (without ``overwrite``).
    """
    import keras

    from mslesion.models import build_model, count_params
    from mslesion.train import batchnorm, keras_metrics, losses, runtime

    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    check_run_inputs(config, PREP_CONFIG)
    train_ids, val_ids, carved = _parts(config)
    with open_run(config, "run", overwrite=overwrite) as (run, state):
        if progress is not None:
            progress.start_run(config.tag, config.epochs, f"{config.model} -> {run}")
        if _finished(run, state):
            if progress is not None:
                progress.skip_run("already finished: skipped")
            return run
        runtime.set_seed(config.seed)
        runtime.set_deterministic(config.deterministic)
        policy = runtime.set_mixed_precision(config.mixed_precision)
        strategy = runtime.pick_strategy(config.strategy)

        in_memory = _dataset_bytes(config.dataset, train_ids + val_ids) <= config.cache_gb * 2**30
        train_set = load_slice_set(config.dataset, train_ids, mmap=not in_memory)
        if config.lesion_slices_only:
            train_set = lesion_slices(train_set, config.dataset)
        val_set = load_slice_set(config.dataset, val_ids, mmap=not in_memory)
        global_batch = config.batch_size * strategy.num_replicas_in_sync
        augment = Augmentation() if config.augment else None
        # a TPU compiles one program per batch shape: every training batch full
        static = runtime.needs_static_shapes(strategy)
        replicas = int(strategy.num_replicas_in_sync)
        devices = runtime.describe_devices()
        source = runtime.input_pipeline(config.input_pipeline, devices, in_memory)
        augment_on = runtime.augment_place(config.augment_on, devices, config.jit_compile) if augment else None
        train_ds = make_dataset(train_set, global_batch, seed=config.seed, balance=config.balance,
                                augment=augment if augment_on == "host" else None,
                                drop_remainder=static, min_last_batch=replicas, source=source)  # fmt: skip
        val_ds = make_dataset(val_set, global_batch, shuffle=False, min_last_batch=replicas)

        with strategy.scope():
            model = build_model(config.model, input_shape=train_set.slice_shape, **config.model_params)
            if policy != "float32":
                # keep the sigmoid output (and so the loss) in float32 under mixed precision
                out = keras.layers.Activation("linear", dtype="float32", name="output_float32")(model.output)
                model = keras.Model(model.inputs, out, name=model.name)
            model.compile(
                optimizer=keras.optimizers.Adam(config.learning_rate),
                loss=losses.get_loss(config.loss, **config.loss_params),
                metrics=keras_metrics.default_metrics(config.threshold),
                jit_compile=config.jit_compile,
            )
            if augment_on == "device":
                augment_in_train_step(model, augment, config.seed)
        steps_per_epoch = len(train_set) // global_batch + (0 if static or len(train_set) % global_batch < replicas else 1)
        steps = steps_per_epoch * config.epochs
        momenta = (batchnorm.adapt_momentum(model, steps, config.bn_horizon, config.bn_max_momentum)
                   if config.bn_horizon else {})  # fmt: skip

        resolved = {
            **asdict(config),
            "run_dir": str(run),
            "train_patients": train_ids,
            "val_patients": val_ids,
            "val_carved_from_train": carved,
            "val_is_train": config.val_fraction == 0 and not split_patients_of(config.dataset, "val", config.fold),
            "n_train_slices": len(train_set),
            "n_val_slices": len(val_set),
            "slices_in_memory": in_memory,
            "input_shape": list(train_set.slice_shape),
            "batch_size_per_replica": config.batch_size,
            "replicas": int(strategy.num_replicas_in_sync),
            "global_batch_size": global_batch,
            "static_batch_shapes": static,
            "input_pipeline_used": source,
            "augment_on_used": augment_on,
            # a last validation batch too small to give every replica a row is left out
            "val_slices_left_out": len(val_set) % global_batch if len(val_set) % global_batch < replicas else 0,
            "dtype_policy": policy,
            "bn_momentum_capped": momenta,
            "params": count_params(model),
        }
        state = _started(run, config, "run", state)
        write_run_records(run, config.dataset, PREP_CONFIG, resolved, runtime.environment(strategy), model)

        if state["phase"] == "fitted":
            _load_fitted(run, model)
        else:
            callbacks = [EpochTimer(len(train_set))]
            if config.tensorboard:
                callbacks += tensorboard_logs.callbacks(run, val_set)
            if progress is not None:
                callbacks.append(progress.keras_callback())
                verbose = 0
            if config.reduce_lr_patience:
                callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=config.reduce_lr_factor,
                                                                   patience=config.reduce_lr_patience))  # fmt: skip
            if config.early_stopping_patience:
                callbacks.append(keras.callbacks.EarlyStopping(
                    monitor="val_dice", mode="max", patience=config.early_stopping_patience))  # fmt: skip
            budget = None
            if config.max_minutes:
                budget = TimeBudget(config.max_minutes, run, steps_per_epoch,
                                    config.epochs, config.bn_horizon, config.bn_max_momentum)  # fmt: skip
                callbacks.append(budget)
            done = _fit_resumably(run, model, train_ds, val_ds, config.epochs, callbacks, verbose,
                                  skip_data=lambda n: _skip_epochs(train_ds, n),
                                  shuffle=False)  # the dataset shuffles itself, seeded per epoch
            if budget is not None:
                state = {**state, "bn_momentum_recapped": budget.recapped}
            state = _fitted(run, model, state, done)

        # from here on everything follows from the fitted weights, so a killed run redoes only this part
        final_eval = _finish(run, model, config, train_set, val_set, val_ds, global_batch, augment,
                             resolved["val_is_train"], {"bn_momentum_recapped": state.get("bn_momentum_recapped")})
        _crash("before_done")
        _done(run, state)
    _announce(final_eval)
    return run


def _finish(run: Path, model, config: TrainConfig, train_set, val_set, val_ds, batch: int, augment,
            val_is_train: bool, extra: dict | None = None) -> dict:  # fmt: skip
    """Score the final and the best epoch's weights as they will be used; write final.keras and model.keras.

    See :mod:`mslesion.train.checkpoints`. Returns what ``final_eval.json`` holds.
    """
    from mslesion.models import load_model
    from mslesion.train import batchnorm, checkpoints

    def evaluate(m) -> dict:
        return m.evaluate(val_ds, verbose=0, return_dict=True)

    def reference(m) -> float:
        return _training_mode_dice(m, val_set, batch, config.threshold, seed=config.seed + 2)

    def recalibrate(m) -> int:
        return batchnorm.recalibrate(m, _recalibration_batches(train_set, batch, config, augment),
                                     max_batches=recalibration_batches(config, len(train_set), batch))  # fmt: skip

    recal = recalibrate if config.recalibrate_bn else None
    candidates = {"final": checkpoints.score_candidate(model, evaluate, reference, recal)}
    _crash("after_recalibration")
    _save_model(model, run / FINAL, "final_model")
    best_epoch, last_epoch = _best_and_last_epoch(run)
    if best_epoch is not None and best_epoch != last_epoch and (run / BEST).is_file():
        model.set_weights(load_model(run / BEST, compile=False).get_weights())
        candidates["best"] = checkpoints.score_candidate(model, evaluate, reference, recal)
    chosen = checkpoints.choose(candidates)
    if chosen == "best":
        _save_model(model, run / checkpoints.CHOICE_FILE, "chosen_model")
    else:
        with atomic_path(run / checkpoints.CHOICE_FILE) as tmp:
            shutil.copyfile(run / FINAL, tmp)
            _crash("chosen_model")
    for name, epoch in (("final", last_epoch), ("best", best_epoch)):
        if name in candidates:
            candidates[name]["epoch"] = epoch
    warnings_ = checkpoints.bn_gap_warnings(candidates, chosen)
    final_eval = {
        **candidates["final"],  # the keys of earlier versions: the final weights' scores
        "candidates": candidates,
        "chosen": chosen,
        "chosen_on": "training patients" if val_is_train else "validation patients",
        "choice": checkpoints.describe_choice(candidates, chosen, val_is_train),
        "bn_gap_tolerance": checkpoints.BN_GAP_TOLERANCE,
        "warnings": warnings_,
        **(extra or {}),
    }
    save_json(run / FINAL_EVAL, final_eval)
    _summary_header(run, final_eval)
    return final_eval


def _announce(final_eval: dict | None) -> None:
    """Print the checkpoint choice; BN warnings go to stderr as well, where they cannot be missed."""
    if not final_eval:
        return
    print(final_eval["choice"])
    for line in final_eval.get("warnings", []):
        warnings.warn(line, stacklevel=3)


def _summary_header(run: Path, final_eval: dict) -> None:
    """Put the end-of-run verdict (warnings first) at the top of summary.txt, above the model summary."""
    path = run / SUMMARY
    body = path.read_text(encoding="utf-8") if path.is_file() else ""
    body = body.split(_SUMMARY_RULE, 1)[-1].lstrip("\n")
    head = [*final_eval["warnings"], final_eval["choice"]]
    for name, c in final_eval["candidates"].items():
        head.append(f"{name} (epoch {c.get('epoch')}): val Dice {c['training_mode_val_dice']:.3f} training mode, "
                    f"{c['inference_before_recalibration'].get('dice', float('nan')):.3f} inference mode as trained, "
                    f"{c['inference'].get('dice', float('nan')):.3f} after recalibration "
                    f"({c['recalibration_batches']} batches)")  # fmt: skip
    save_text(path, "\n".join(head) + "\n" + _SUMMARY_RULE + "\n" + body)


_SUMMARY_RULE = "-" * 72


def _best_and_last_epoch(run: Path) -> tuple[int | None, int | None]:
    """0-based epochs of best.keras (the first with the highest finite val_dice) and of the last row."""
    try:
        history = read_history(run)
    except (OSError, ValueError):
        return None, None
    if not len(history):
        return None, None
    last = int(history.epoch.iloc[-1])
    if "val_dice" not in history or not np.isfinite(history.val_dice).any():
        return None, last
    return int(history.epoch[history.val_dice.fillna(-np.inf).idxmax()]), last


def recalibration_batches(config, n_slices: int, batch: int) -> int:
    """How many batches re-estimate BN statistics: the config's, else one epoch of full batches (1 to 200).

    Measured on a real MS patient (Ljubljana patient 07, 114 slices at 128x128, sm Unet-MobileNetV2,
    batch 16, 30 epochs): 8 and 32 batches give the same inference-mode Dice (0.275 and 0.276), so one
    epoch is enough; the short last batch is left out (8 batches with it: 0.280).
    """
    if config.recalibration_batches:
        return int(config.recalibration_batches)
    return int(np.clip(n_slices // batch, 1, 200))


def _recalibration_batches(train_set, batch: int, config: TrainConfig, augment):
    """Batches drawn like training batches (shuffled, balanced and augmented as the run was), epoch after epoch.

    Full batches only when there are enough slices: a short last batch has noisy statistics.
    """
    ds = make_dataset(train_set, batch, seed=config.seed + 1, balance=config.balance, augment=augment,
                      drop_remainder=len(train_set) >= batch)  # fmt: skip
    return ds.repeat()


def lesion_slices(slices, dataset: str):
    """The slices of ``slices`` that hold lesion (manifest), as a new SliceSet on the same arrays."""
    from mslesion.train.datasets import SliceSet

    keep = np.flatnonzero(slices.has_lesion)
    if not len(keep):
        raise DataError(Path(dataset), "lesion_slices_only: the training patients have no slice with lesion")
    return SliceSet(slices.images, slices.masks, slices.index[keep], slices.has_lesion[keep], slices.patients)


def _dataset_bytes(dataset: str, patients: list[str]) -> int:
    root = Path(dataset)
    return sum((root / p / name).stat().st_size for p in patients for name in ("image.npy", "mask.npy")
               if (root / p / name).is_file())  # fmt: skip


def _training_mode_dice(model, val_set, batch_size: int, threshold: float, seed: int = 0) -> float:
    """Pooled val Dice with BN in training mode (statistics of shuffled batches, as in the fit): BN health's reference."""
    tp = fp = fn = 0
    for x, y in make_dataset(val_set, batch_size, shuffle=True, seed=seed):
        pred = np.asarray(model(x, training=True)) > threshold
        truth = y.numpy() > 0.5
        tp += int((pred & truth).sum())
        fp += int((pred & ~truth).sum())
        fn += int((~pred & truth).sum())
    return compute_dice(Confusion(tp, fp, fn, 0))
