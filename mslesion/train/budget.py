"""Wall-clock budgets of a run: :class:`TimeBudget` (stop before the next epoch would overrun) and per-epoch timing."""

from __future__ import annotations

import time
from pathlib import Path

from mslesion.paths import HISTORY
from mslesion.train.history import read_history

__all__ = ["TimeBudget", "EpochTimer"]

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
