"""Fitting so that a kill loses at most the epoch in flight: end-of-epoch backups (two generations),
restoring the newest that loads, callback state, and the phases after the fit."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from mslesion.fileio import atomic_path, crash_point, load_json, save_json
from mslesion.outputs import OutputError
from mslesion.paths import BEST, STATE
from mslesion.train.history import csv_value, history_before, write_history
from mslesion.train.runfolder import remove_backups, short_error

__all__ = ["crash", "load_weights", "save_backup", "restore_backup", "best_so_far", "callback_state", "epoch_keeper",
           "fit_resumably", "skip_epochs", "mark_fitted", "load_fitted", "save_model", "mark_done"]  # fmt: skip


# what Keras callbacks reset in on_train_begin and a resume must give back
_CALLBACK_STATE = {"ReduceLROnPlateau": ("best", "wait", "cooldown_counter"),
                   "EarlyStopping": ("best", "wait", "best_epoch", "stopped_epoch")}  # fmt: skip


def crash(name: str, epoch: int | None = None) -> None:
    """Crash point ``train.<name>``; with ``epoch`` (0-based, as in history.csv) also ``train.<name>@<epoch>``."""
    crash_point(f"train.{name}")
    if epoch is not None:
        crash_point(f"train.{name}@{epoch}")


def load_weights(model, path: Path) -> None:
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


def save_backup(run: Path, model, n: int, info: dict) -> None:
    """Back up the state after ``n`` epochs: weights with optimizer state, then the record; keeps the one before."""
    backup = run / "backup"
    weights, record = _generation(backup, n)
    with atomic_path(weights) as tmp:
        model.save_weights(tmp)
        crash("backup_weights", n - 1)
    crash("backup_state", n - 1)
    # the record is written last: a backup without one is incomplete and never loaded
    save_json(record, {**info, "epoch": n, "weights": weights.name, "weights_bytes": weights.stat().st_size})
    older = [g for g in _generations(backup) if g < n]
    keep = {n, max(older)} if older else {n}
    for p in backup.iterdir():
        m = re.fullmatch(r"epoch_(\d+)\.(?:weights\.h5|json)", p.name)
        if m and int(m.group(1)) not in keep:
            p.unlink(missing_ok=True)


def restore_backup(run: Path, model) -> dict | None:
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
            load_weights(model, weights)
        except Exception as exc:  # noqa: BLE001 - whatever h5py, Keras or json say, this backup is unusable
            warnings.warn(f"{bad}: damaged backup of epoch {n}, does not load ({short_error(exc)}); "
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


def best_so_far(run: Path, info: dict | None) -> tuple[float, int | None]:
    """The best val_dice to beat: the backup's, provided best.keras still loads; else -inf (re-made next epoch)."""
    from mslesion.models import load_model

    path = run / BEST
    if not info or info.get("best") is None or not path.is_file():
        return -math.inf, None
    try:
        load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - a file that does not load is no checkpoint, whatever the reason
        warnings.warn(f"{path}: does not load ({short_error(exc)}); removed, it is re-made from the next epoch",
                      stacklevel=3)  # fmt: skip
        path.unlink()
        return -math.inf, None
    return float(info["best"]), info.get("best_epoch")


def callback_state(callback) -> dict:
    state = {}
    for key in _CALLBACK_STATE.get(type(callback).__name__, ()):
        value = getattr(callback, key, None)
        state[key] = int(value) if isinstance(value, (int, np.integer)) else (
            float(value) if isinstance(value, (float, np.floating)) else value)  # fmt: skip
    return state


def epoch_keeper(run: Path, info: dict | None, stateful: list, header: list[str], rows: list[dict], best: float,
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
            rows.append({"epoch": epoch, **{k: csv_value(v) for k, v in logs.items()}})
            write_history(run, header, rows)
            crash("after_history", epoch)
            value = logs.get("val_dice")
            if value is not None and np.isfinite(value) and float(value) > self.best:
                with atomic_path(run / BEST) as tmp:
                    self.model.save(tmp)
                    crash("best_checkpoint", epoch)
                self.best, self.best_epoch = float(value), epoch
            self.done = epoch + 1
            save_backup(run, self.model, epoch + 1, {
                "best": self.best if np.isfinite(self.best) else None, "best_epoch": self.best_epoch,
                "stop_training": bool(self.model.stop_training),
                "callbacks": {type(c).__name__: callback_state(c) for c in stateful},
                "data_epoch": epoch + 1,  # epochs of training data drawn: the seeded order of the next is (seed, this)
            })  # fmt: skip
            crash("after_backup", epoch)

    return _Keeper()


def fit_resumably(run: Path, model, data, val_data, epochs: int, callbacks: list, verbose: int,
                   skip_data: Callable[[int], None] | None = None, initialise: Callable[[], None] | None = None,
                   **fit_kwargs) -> int:  # fmt: skip
    """Fit ``model`` from the newest backup of ``run`` that loads (or from scratch); returns the epochs done.

    ``history.csv`` is first cut back to the epochs the backup covers. ``skip_data(n)``
    advances the training data to epoch ``n`` when the data cannot be told its epoch.
    ``initialise()`` sets the model's starting weights (a warm start) when no backup loads, and only then.
    """
    info = restore_backup(run, model)
    if info is None and initialise is not None:
        initialise()
    start = int(info["epoch"]) if info else 0
    header, rows = history_before(run, start)
    write_history(run, header, rows)
    best, best_epoch = best_so_far(run, info)
    if info and (start >= epochs or info.get("stop_training")):
        return start  # killed after the last epoch's backup, before the fit was recorded as done
    if start:
        print(f"{run}: resuming at epoch {start + 1} of {epochs}")
        if skip_data is not None:
            skip_data(int(info.get("data_epoch", start)))
    stateful = [c for c in callbacks if type(c).__name__ in _CALLBACK_STATE]
    keeper = epoch_keeper(run, info, stateful, header, rows, best, best_epoch)
    model.fit(data, validation_data=val_data, epochs=epochs, initial_epoch=start, callbacks=[*callbacks, keeper],
              verbose=verbose, **fit_kwargs)  # fmt: skip
    return keeper.done or start


def skip_epochs(dataset, n: int) -> None:
    """Advance :func:`make_dataset`'s seeded epoch counter by ``n``, so a resumed fit draws each epoch's own order."""
    for _ in range(n):
        iterator = iter(dataset)
        next(iterator)  # the generator draws an epoch's order when it starts: once per iterator
        del iterator


def mark_fitted(run: Path, model, state: dict, epochs_done: int) -> dict:
    """Record the end of the fit: its weights, then the state; the backups go (the fit is never repeated)."""
    with atomic_path(run / "fitted.weights.h5") as tmp:
        model.save_weights(tmp)
        crash("fitted_weights")
    state = {**state, "phase": "fitted", "fit_epochs": epochs_done}
    save_json(run / STATE, state)
    remove_backups(run)
    crash("after_fit")
    return state


def load_fitted(run: Path, model) -> None:
    path = run / "fitted.weights.h5"
    try:
        load_weights(model, path)
    except Exception as exc:  # noqa: BLE001
        raise OutputError(f"{path}: the fitted weights do not load ({short_error(exc)}); "
                          "pass --overwrite to train the run afresh") from None  # fmt: skip
    print(f"{run}: the fit is done; finishing the run")


def save_model(model, path: Path, point: str) -> None:
    with atomic_path(path) as tmp:
        model.save(tmp)
        crash(point)


def mark_done(run: Path, state: dict) -> None:
    save_json(run / STATE, {**state, "phase": "done"})
    (run / "fitted.weights.h5").unlink(missing_ok=True)
