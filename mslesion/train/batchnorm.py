"""Keep batch-norm statistics usable after short runs.

A BatchNormalization layer's moving mean/variance move toward the batch
statistics by ``1 - momentum`` per step. keras-applications encoders (used by
segmentation_models) build theirs with ``momentum=0.999``: after 1,500 steps
the initial values still weigh 0.999**1500 = 22%, so a model trained from
scratch for a few epochs predicts well in training mode and nothing in
inference mode. Two remedies, both applied by the training runner:

* :func:`adapt_momentum` before fitting: cap each trainable BN layer's momentum
  at :data:`MAX_MOMENTUM` (0.9, PyTorch's default update of 0.1), and lower
  still for short runs, so that the initial statistics decay to
  ``exp(-horizon)`` over the run. The ceiling matters as much as the horizon:
  with a long planned run (``epochs=200`` cut short by a time budget, or early
  stopping) a momentum of 0.995 averages over hundreds of steps of weights that
  no longer exist, and every per-epoch inference-mode validation Dice (and so
  ``best.keras``, early stopping, ReduceLROnPlateau) measures stale statistics:
  0.000 at every epoch on 14 LGG training patients;
* :func:`recalibrate` after fitting: re-estimate the statistics as the plain
  average over training batches (the "precise BN" of Wu & Johnson 2021).

Frozen BN layers (a frozen ImageNet encoder) keep their statistics.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["MAX_MOMENTUM", "batchnorm_layers", "adapt_momentum", "recalibrate"]

#: ceiling of trainable BN momenta during training (moving = m * moving + (1 - m) * batch)
MAX_MOMENTUM = 0.9


def batchnorm_layers(model, trainable_only: bool = True) -> list:
    import keras

    layers = [layer for layer in _walk(model) if isinstance(layer, keras.layers.BatchNormalization)]
    return [layer for layer in layers if layer.trainable] if trainable_only else layers


def _walk(layer):
    yield layer
    for sub in getattr(layer, "layers", []) or []:
        if sub is not layer:
            yield from _walk(sub)


def adapt_momentum(model, total_steps: int, horizon: float = 10.0,
                   ceiling: float = MAX_MOMENTUM) -> dict[str, float]:  # fmt: skip
    """Cap trainable BN momenta at ``min(ceiling, 1 - horizon / total_steps)`` (never below 0.5).

    Returns:
        {layer name: new momentum} for the layers changed.
    """
    if not 0.5 <= ceiling < 1.0:
        raise ValueError(f"BN momentum ceiling must be in [0.5, 1), not {ceiling}")
    cap = float(ceiling) if total_steps <= 0 else float(np.clip(1.0 - horizon / total_steps, 0.5, ceiling))
    changed = {}
    for layer in batchnorm_layers(model):
        if layer.momentum > cap:
            layer.momentum = cap
            changed[layer.name] = cap
    return changed


def recalibrate(model, batches: Iterable, max_batches: int = 200) -> int:
    """Replace trainable BN moving statistics by their average over ``batches``.

    Runs the model eagerly in training mode (weights are not changed; only BN
    statistics are) with momentum ``i / (i + 1)`` at batch ``i``, which makes the
    moving values the running mean of the batch statistics.

    Returns:
        The number of batches used.
    """
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    saved = [layer.momentum for layer in layers]
    used = 0
    try:
        for i, batch in enumerate(batches):
            if i >= max_batches:
                break
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            for layer in layers:
                layer.momentum = i / (i + 1.0)
            model(x, training=True)
            used += 1
    finally:
        for layer, momentum in zip(layers, saved):
            layer.momentum = momentum
    return used
