"""Keep batch-norm statistics usable after short runs.

A BatchNormalization layer's moving mean/variance move toward the batch
statistics by ``1 - momentum`` per step. keras-applications encoders (used by
segmentation_models) build theirs with ``momentum=0.999``: after 1,500 steps
the initial values still weigh 0.999**1500 = 22%, so a model trained from
scratch for a few epochs predicts well in training mode and nothing in
inference mode. Two remedies, both applied by the training runner:

* :func:`adapt_momentum` before fitting: cap each trainable BN layer's momentum
  so the initial statistics decay to ``exp(-horizon)`` over the run;
* :func:`recalibrate` after fitting: re-estimate the statistics as the plain
  average over training batches (the "precise BN" of Wu & Johnson 2021).

Frozen BN layers (a frozen ImageNet encoder) keep their statistics.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["batchnorm_layers", "adapt_momentum", "recalibrate"]


def batchnorm_layers(model, trainable_only: bool = True) -> list:
    import keras

    layers = [layer for layer in _walk(model) if isinstance(layer, keras.layers.BatchNormalization)]
    return [layer for layer in layers if layer.trainable] if trainable_only else layers


def _walk(layer):
    yield layer
    for sub in getattr(layer, "layers", []) or []:
        if sub is not layer:
            yield from _walk(sub)


def adapt_momentum(model, total_steps: int, horizon: float = 10.0) -> dict[str, float]:
    """Cap trainable BN momenta at ``1 - horizon / total_steps``; returns {layer: new momentum} changed."""
    if total_steps <= 0:
        return {}
    cap = float(np.clip(1.0 - horizon / total_steps, 0.5, 0.999))
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
