"""The optimizer and learning-rate schedule of a run, built in one place from its config (2D, 3D, tuning).

Optimizers (``RunConfig.optimizer``): ``adam`` (the default, as in the backbone report), ``adamw`` and
``sgd`` (``momentum``, ``nesterov``). Weight decay is Keras 3's, decoupled from the gradient: each step
``w -= learning_rate * weight_decay * w`` (AdamW; for SGD the same rule, where PyTorch's SGD adds
``weight_decay * w`` to the gradient instead: the same without momentum, close with it). Rondinella et al.
(2023) trained their FC-DenseNet with SGD at learning rate 1e-4 and weight decay 1e-4 (batch 4, 200 epochs,
Dice loss; momentum not stated, PyTorch's default is none).

Schedules (``lr_schedule``), stepped per batch: Keras calls them with the optimizer's iteration count,
which is saved with the optimizer state in every backup, so a resumed run goes on where it stopped.

- ``constant``: the learning rate.
- ``cosine``: Keras' ``CosineDecay`` from the learning rate to ``min_learning_rate`` at the last step of
  ``epochs`` (Loshchilov & Hutter's cosine annealing without restarts). With ``--max-minutes`` the
  decay still spans ``epochs``.
- ``cyclical``: Smith's (2017) triangular cyclical learning rate, :class:`TriangularCyclicalLearningRate`:
  up linearly from ``min_learning_rate`` to the learning rate and back, one cycle every ``cycle_epochs``
  (the full period; Smith's step size is half of it). The LGG encoder comparison names cyclical learning
  rates as its next step.

``warmup_epochs`` rises linearly from 0 to the learning rate first (then: constant, the cosine, or the
cycle entered at its top, so the rate does not jump).
"""

from __future__ import annotations

import math

import keras
from keras import ops

__all__ = ["TriangularCyclicalLearningRate", "make_schedule", "make_optimizer"]


@keras.saving.register_keras_serializable(package="mslesion")
class TriangularCyclicalLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """Smith's (2017) triangular cyclical learning rate, after an optional linear warm-up.

    Args:
        base_learning_rate: the bottom of each cycle.
        max_learning_rate: the top of each cycle (and the end of the warm-up).
        cycle_steps: steps of one full cycle, bottom to bottom (twice Smith's step size).
        warmup_steps: steps of a linear rise from 0 to ``max_learning_rate`` first; the cycle then
            starts at its top. Without a warm-up it starts at the bottom, as Smith's does.
    """

    def __init__(self, base_learning_rate: float, max_learning_rate: float, cycle_steps: float,
                 warmup_steps: int = 0, name: str = "triangular_cyclical"):  # fmt: skip
        super().__init__()
        if cycle_steps <= 0:
            raise ValueError(f"cycle_steps must be positive, not {cycle_steps}")
        self.base_learning_rate = float(base_learning_rate)
        self.max_learning_rate = float(max_learning_rate)
        self.cycle_steps = float(cycle_steps)
        self.warmup_steps = int(warmup_steps)
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        half = self.cycle_steps / 2
        # after a warm-up the cycle is entered half-way, at its top
        t = step - self.warmup_steps + (half if self.warmup_steps else 0.0)
        position = ops.mod(ops.maximum(t, 0.0), self.cycle_steps)
        height = ops.maximum(0.0, 1.0 - ops.abs(position / half - 1.0))
        cyclical = self.base_learning_rate + (self.max_learning_rate - self.base_learning_rate) * height
        if not self.warmup_steps:
            return cyclical
        warmup = self.max_learning_rate * step / self.warmup_steps
        return ops.where(step < self.warmup_steps, warmup, cyclical)

    def get_config(self) -> dict:
        return {"base_learning_rate": self.base_learning_rate, "max_learning_rate": self.max_learning_rate,
                "cycle_steps": self.cycle_steps, "warmup_steps": self.warmup_steps, "name": self.name}  # fmt: skip


def make_schedule(config, learning_rate: float, steps_per_epoch: int | None = None):
    """The learning rate of ``config``'s schedule peaking at ``learning_rate``: a float, or a Keras schedule.

    Args:
        config: a run config (``lr_schedule``, ``warmup_epochs``, ``min_learning_rate``, ``cycle_epochs``,
            ``epochs``).
        learning_rate: the rate of a constant schedule, the warm-up target and the cosine's or cycle's top.
        steps_per_epoch: training batches per epoch; needed by every schedule but a constant one.

    Raises:
        ValueError: a schedule without ``steps_per_epoch``, or a floor above ``learning_rate``.
    """
    kind, warmup_epochs = config.lr_schedule, config.warmup_epochs
    if kind == "constant" and not warmup_epochs:
        return float(learning_rate)
    if not steps_per_epoch:
        raise ValueError(f"lr_schedule={kind!r} (warmup_epochs={warmup_epochs}) needs the steps per epoch")
    floor = config.min_learning_rate
    if kind != "constant" and floor > learning_rate:
        raise ValueError(f"min_learning_rate {floor:g} is above the learning rate {learning_rate:g}")
    warmup = warmup_epochs * steps_per_epoch
    if kind == "cyclical":
        return TriangularCyclicalLearningRate(floor, learning_rate, config.cycle_epochs * steps_per_epoch, warmup)
    decay = max(1, config.epochs * steps_per_epoch - warmup)
    # a constant rate after a warm-up is a cosine whose floor is its top (alpha=1)
    alpha = 1.0 if kind == "constant" else floor / learning_rate
    if warmup:
        return keras.optimizers.schedules.CosineDecay(0.0, decay, alpha=alpha, warmup_target=float(learning_rate),
                                                      warmup_steps=warmup)  # fmt: skip
    return keras.optimizers.schedules.CosineDecay(float(learning_rate), decay, alpha=alpha)


def make_optimizer(config, learning_rate: float | None = None, steps_per_epoch: int | None = None):
    """The ``keras.optimizers.Optimizer`` of ``config`` at ``learning_rate`` (default ``config.learning_rate``).

    Args:
        config: a run config (``optimizer``, ``momentum``, ``nesterov``, ``weight_decay`` and the schedule's
            options, see :func:`make_schedule`).
        learning_rate: e.g. a learning-rate search's trial value; the schedule peaks at it.
        steps_per_epoch: training batches per epoch (schedules need it).
    """
    if learning_rate is None:
        learning_rate = config.learning_rate
    if not (learning_rate > 0 and math.isfinite(learning_rate)):
        raise ValueError(f"the learning rate must be a positive number, not {learning_rate}")
    rate = make_schedule(config, learning_rate, steps_per_epoch)
    decay = config.weight_decay or None  # None: Keras applies none
    if config.optimizer == "adam":
        return keras.optimizers.Adam(rate)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=decay)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=config.momentum, nesterov=config.nesterov, weight_decay=decay)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")
