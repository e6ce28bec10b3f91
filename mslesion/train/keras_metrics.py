"""Keras metrics for training curves (accuracy, Dice, IoU), serialisable in ``.keras`` files.

They pool TP/FP/FN over every pixel seen in the epoch after thresholding at
``threshold``: the curve's "Dice" is one pooled number per epoch, not the mean
of per-slice or per-patient Dice that :mod:`mslesion.evaluate.metrics` reports. With
nothing to overlap in a whole epoch (no lesion, none predicted) they return 0,
like ``keras.metrics.BinaryIoU``. segmentation_models' metric objects are not
used: a model compiled with them cannot be saved as ``.keras`` on Keras 3.
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["DiceScore", "iou_metric", "default_metrics"]


@keras.saving.register_keras_serializable("mslesion")
class DiceScore(keras.metrics.Metric):
    """Pooled hard Dice, 2TP / (2TP + FP + FN), over all batches since the last reset."""

    def __init__(self, threshold: float = 0.5, name: str = "dice", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.threshold = threshold
        self.tp = self.add_variable(shape=(), initializer="zeros", name="tp")
        self.fp = self.add_variable(shape=(), initializer="zeros", name="fp")
        self.fn = self.add_variable(shape=(), initializer="zeros", name="fn")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(ops.convert_to_tensor(y_true) > 0.5, "float32")
        y_pred = ops.cast(ops.convert_to_tensor(y_pred) > self.threshold, "float32")
        tp = ops.sum(y_true * y_pred)
        self.tp.assign_add(ops.cast(tp, self.dtype))
        self.fp.assign_add(ops.cast(ops.sum(y_pred) - tp, self.dtype))
        self.fn.assign_add(ops.cast(ops.sum(y_true) - tp, self.dtype))

    def result(self):
        den = 2.0 * self.tp + self.fp + self.fn
        return ops.where(den > 0, 2.0 * self.tp / ops.maximum(den, 1.0), 0.0)

    def reset_state(self):
        for v in (self.tp, self.fp, self.fn):
            v.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


def iou_metric(threshold: float = 0.5, name: str = "iou") -> keras.metrics.BinaryIoU:
    """Pooled IoU of the lesion class: Keras' own BinaryIoU restricted to class 1."""
    return keras.metrics.BinaryIoU(target_class_ids=[1], threshold=threshold, name=name)


def default_metrics(threshold: float = 0.5) -> list[keras.metrics.Metric]:
    """The backbone report's tracked metrics: accuracy, Dice, IoU (on train and validation)."""
    return [keras.metrics.BinaryAccuracy(threshold=threshold, name="accuracy"), DiceScore(threshold), iou_metric(threshold)]
