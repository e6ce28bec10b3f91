"""Segmentation losses for training (smoothed, differentiable), ``keras.ops`` only.

Each loss is a pure function plus a thin serialisable ``keras.losses.Loss``.
By default the overlap terms are pooled over the whole mini-batch, as Røvang (2021)
does (its figure 4.2): most MS slices hold no lesion, and a per-image Dice
would give those slices either a meaningless loss of 1 or, with smoothing, a
loss that ignores false positives. ``per_image=True`` gives per-slice losses.

Not taken from Keras: ``keras.losses.Dice`` has no smoothing (an empty slice
predicted empty costs 1 per image) and ``keras.losses.Tversky`` has no
smoothing and puts ``alpha`` on false negatives although its docstring says
false positives. Here ``alpha`` weighs FN and ``beta`` FP exactly as Røvang (2021)
eq. 4.8 writes them: ``TI = (TP + O) / (TP + alpha FN + beta FP + O)``.
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["soft_dice_loss", "tversky_index", "tversky_loss", "focal_tversky_loss", "bce_dice_loss", "SoftDiceLoss",
           "TverskyLoss", "FocalTverskyLoss", "BceDiceLoss", "LOSSES", "get_loss"]  # fmt: skip


def _axes(y_pred, per_image: bool):
    return tuple(range(1, len(y_pred.shape))) if per_image else None


def _overlaps(y_true, y_pred, per_image: bool):
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(y_true, y_pred.dtype)
    axes = _axes(y_pred, per_image)
    tp = ops.sum(y_true * y_pred, axis=axes)
    fn = ops.sum(y_true * (1.0 - y_pred), axis=axes)
    fp = ops.sum((1.0 - y_true) * y_pred, axis=axes)
    return tp, fn, fp


def soft_dice_loss(y_true, y_pred, smooth: float = 1.0, per_image: bool = False):
    """1 - (2 TP + s) / (2 TP + FN + FP + s) on probabilities (Rondinella et al. 2023; the LGG encoder comparison)."""
    tp, fn, fp = _overlaps(y_true, y_pred, per_image)
    return 1.0 - (2.0 * tp + smooth) / (2.0 * tp + fn + fp + smooth)


def tversky_index(y_true, y_pred, alpha: float = 0.85, beta: float = 0.15, smooth: float = 1.0, per_image=False):
    """Røvang's (2021) eq. 4.8: (TP + O) / (TP + alpha FN + beta FP + O)."""
    tp, fn, fp = _overlaps(y_true, y_pred, per_image)
    return (tp + smooth) / (tp + alpha * fn + beta * fp + smooth)


def tversky_loss(y_true, y_pred, alpha: float = 0.85, beta: float = 0.15, smooth: float = 1.0, per_image=False):
    """1 - Tversky index (Røvang's (2021) eq. 4.11)."""
    return 1.0 - tversky_index(y_true, y_pred, alpha, beta, smooth, per_image)


def focal_tversky_loss(
    y_true, y_pred, alpha: float = 0.85, beta: float = 0.15, gamma: float = 4 / 3, smooth: float = 1.0,
    per_image: bool = False,
):  # fmt: skip
    """(1 - TI) ** gamma, Røvang's (2021) eq. 4.12 with its gamma = 4/3.

    Abraham & Khan (2019), whom Røvang (2021) follows, write the exponent as 1/gamma
    with gamma = 4/3, i.e. 0.75; Røvang (2021) took that for a typo and used 4/3.
    Pass ``gamma=0.75`` to reproduce the original paper.
    """
    loss = tversky_loss(y_true, y_pred, alpha, beta, smooth, per_image)
    return ops.power(ops.maximum(loss, 0.0), gamma)


def bce_dice_loss(
    y_true, y_pred, bce_weight: float = 0.5, dice_weight: float = 0.5, smooth: float = 1.0, per_image: bool = False
):
    """Weighted binary cross-entropy + soft Dice (the 3DR2AUNet paper (2024) uses 0.5 / 0.5)."""
    y_pred = ops.convert_to_tensor(y_pred)
    bce = keras.losses.binary_crossentropy(ops.cast(y_true, y_pred.dtype), y_pred)
    bce = ops.mean(bce, axis=_axes(bce, per_image))
    return bce_weight * bce + dice_weight * soft_dice_loss(y_true, y_pred, smooth, per_image)


class _ConfigLoss(keras.losses.Loss):
    """A Loss whose keyword parameters are its config."""

    fn = None
    defaults: dict = {}

    def __init__(self, name: str | None = None, reduction: str = "sum_over_batch_size", dtype=None, **params):
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown parameters {sorted(unknown)}")
        super().__init__(name=name or self.default_name, reduction=reduction, dtype=dtype)
        self.params = {**self.defaults, **params}

    def call(self, y_true, y_pred):
        return type(self).fn(y_true, y_pred, **self.params)

    def get_config(self):
        return {**super().get_config(), **self.params}


@keras.saving.register_keras_serializable("mslesion")
class SoftDiceLoss(_ConfigLoss):
    fn = staticmethod(soft_dice_loss)
    defaults = {"smooth": 1.0, "per_image": False}
    default_name = "soft_dice"


@keras.saving.register_keras_serializable("mslesion")
class TverskyLoss(_ConfigLoss):
    fn = staticmethod(tversky_loss)
    defaults = {"alpha": 0.85, "beta": 0.15, "smooth": 1.0, "per_image": False}
    default_name = "tversky"


@keras.saving.register_keras_serializable("mslesion")
class FocalTverskyLoss(_ConfigLoss):
    fn = staticmethod(focal_tversky_loss)
    defaults = {"alpha": 0.85, "beta": 0.15, "gamma": 4 / 3, "smooth": 1.0, "per_image": False}
    default_name = "focal_tversky"


@keras.saving.register_keras_serializable("mslesion")
class BceDiceLoss(_ConfigLoss):
    fn = staticmethod(bce_dice_loss)
    defaults = {"bce_weight": 0.5, "dice_weight": 0.5, "smooth": 1.0, "per_image": False}
    default_name = "bce_dice"


#: name -> loss class; ``bce`` is Keras' own (the backbone report's loss).
LOSSES: dict[str, type[keras.losses.Loss]] = {
    "bce": keras.losses.BinaryCrossentropy,
    "dice": SoftDiceLoss,
    "bce_dice": BceDiceLoss,
    "tversky": TverskyLoss,
    "focal_tversky": FocalTverskyLoss,
}


def get_loss(name: str, **params) -> keras.losses.Loss:
    """A loss object by name (see :data:`LOSSES`) with its parameters."""
    if name not in LOSSES:
        raise KeyError(f"unknown loss {name!r}; known: {sorted(LOSSES)}")
    return LOSSES[name](**params)
