"""Encoder training modes and input-channel adapters shared by the zoo adapters.

Encoder modes (``encoder=``), for models with a backbone:

- ``"trainable"``: every encoder layer trains.
- ``"frozen"``: every encoder layer is frozen, BatchNormalization included
  (Keras 3 then runs those BN layers in inference mode). This is what
  keras-unet-collection does with ``freeze_backbone=True``; it differs from
  segmentation_models' own ``encoder_freeze=True``, which leaves BN trainable.
- ``int N``: freeze the first ``N`` encoder blocks and train the rest (the LGG encoder comparison
  froze the first two VGG16 conv blocks). A block ends at each skip-connection
  feature layer of the encoder (VGG16: ``block1_conv2``, ``block2_conv2``,
  ``block3_conv3``, ...); weights after the last feature layer form one more
  block. ``0`` equals ``"trainable"``.

Channels: pretrained encoders take 3 channels. With ``C != 3`` input channels
and pretrained weights, :func:`with_channel_adapter` puts a learned 1x1
``Conv2D`` projecting C -> 3 channels (layer ``channel_projection``,
``3*C + 3`` weights) in front of the 3-channel model; ``channel_adapter="repeat"``
(``C == 1`` only) instead tiles the single channel to 3 with no new weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras

from mslesion.models.errors import EncoderModeError

__all__ = ["ENCODER_MODES", "CHANNEL_ADAPTERS", "check_encoder", "freeze_encoder", "encoder_blocks", "needs_adapter",
           "with_channel_adapter"]

ENCODER_MODES = ("trainable", "frozen")
CHANNEL_ADAPTERS = ("conv", "repeat")


def check_encoder(encoder, has_encoder: bool = True) -> str | int:
    """Validate an ``encoder=`` mode: ``"trainable"``, ``"frozen"`` or an int >= 0.

    Raises:
        EncoderModeError: unknown mode, negative int, or a freezing mode for a
            model without a pretrained-style encoder.
    """
    if isinstance(encoder, bool) or not (encoder in ENCODER_MODES or isinstance(encoder, int)):
        raise EncoderModeError(f"encoder must be 'trainable', 'frozen' or an int >= 0; got {encoder!r}")
    if isinstance(encoder, int) and encoder < 0:
        raise EncoderModeError(f"encoder block count must be >= 0; got {encoder}")
    if not has_encoder and encoder not in ("trainable", 0):
        raise EncoderModeError(
            f"encoder={encoder!r} needs a backbone; this model has none (built from scratch), use 'trainable'"
        )
    return encoder


def encoder_blocks(layers: Sequence[keras.layers.Layer], feature_names: Sequence[str | int]) -> list[list]:
    """Split encoder layers (topological order) into blocks ending at each feature layer.

    Args:
        layers: the encoder's layers in topological order.
        feature_names: skip-feature layer names (or indices into ``layers``),
            shallowest first.

    Returns:
        A list of layer lists; layers after the last feature layer form one
        more block when any of them holds weights.
    """
    index = {layer.name: i for i, layer in enumerate(layers)}
    ends = sorted(f if isinstance(f, int) else index[f] for f in feature_names)
    blocks, start = [], 0
    for end in ends:
        blocks.append(list(layers[start : end + 1]))
        start = end + 1
    rest = list(layers[start:])
    if any(layer.weights for layer in rest):
        blocks.append(rest)
    return blocks


def freeze_encoder(blocks: list[list], encoder: str | int) -> None:
    """Set ``trainable`` on encoder layers for an ``encoder=`` mode (see module doc).

    Raises:
        EncoderModeError: ``N`` larger than the number of blocks.
    """
    if encoder == "trainable":
        n_frozen = 0
    elif encoder == "frozen":
        n_frozen = len(blocks)
    else:
        n_frozen = encoder
        if n_frozen > len(blocks):
            raise EncoderModeError(f"encoder={n_frozen}: this encoder has only {len(blocks)} blocks")
    for i, block in enumerate(blocks):
        for layer in block:
            layer.trainable = i >= n_frozen


def needs_adapter(input_shape: Sequence[int], pretrained: bool, channel_adapter: str | None) -> bool:
    """True when a C -> 3 adapter goes in front: C != 3 and pretrained or adapter asked for."""
    if channel_adapter is not None and channel_adapter not in CHANNEL_ADAPTERS:
        raise ValueError(f"channel_adapter must be None, 'conv' or 'repeat'; got {channel_adapter!r}")
    channels = input_shape[-1]
    if channel_adapter == "repeat" and channels != 1:
        raise ValueError(f"channel_adapter='repeat' needs 1 input channel; got {channels}")
    return channels != 3 and (pretrained or channel_adapter is not None)


def with_channel_adapter(
    build_rgb: Callable[[tuple], keras.Model], input_shape: Sequence[int], channel_adapter: str | None = None
) -> keras.Model:
    """Build a 3-channel model and put a C -> 3 channel adapter in front of it.

    Args:
        build_rgb: builds the model for an ``(H, W, 3)`` input shape.
        input_shape: ``(H, W, C)`` of the data.
        channel_adapter: ``"conv"`` (default): learned 1x1 ``Conv2D`` C -> 3
            (layer ``channel_projection``); ``"repeat"`` (C == 1): tile to 3
            channels, no weights.

    Returns:
        ``Input(H, W, C) -> adapter -> inner model``, named like the inner model.
    """
    height, width, channels = input_shape
    inner = build_rgb((height, width, 3))
    inputs = keras.Input((height, width, channels), name="input")
    if (channel_adapter or "conv") == "repeat":
        x = keras.layers.Concatenate(axis=-1, name="channel_repeat")([inputs] * 3)
    else:
        x = keras.layers.Conv2D(3, 1, name="channel_projection")(inputs)
    return keras.Model(inputs, inner(x), name=inner.name)
