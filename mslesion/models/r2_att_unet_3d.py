"""3D recurrent-residual attention U-Net (the 3DR2AUNet paper, 2024, "F.sh / 3DR2AUNet"), ``keras.layers`` only.

Architecture (the 3DR2AUNet paper's (2024) section C; blocks as in Alom et al. 2018 R2U-Net and
Oktay et al. 2018 Attention U-Net, following the reference R2AttU-Net of
LeeJunHyun/Image_Segmentation with every 2D operation made 3D):

* **R2 block** (3DR2CL): a 1x1x1 conv to the block width ``f``, then two
  recurrent conv units, plus a residual add of the 1x1x1 output::

      x0 = Conv1(x);  h = RCU(RCU(x0));  out = x0 + h

  A recurrent conv unit applies one conv3x3x3+BN+ReLU (weights shared over
  time) once feed-forward and then ``recurrence`` more times with its input
  re-added: ``h = f(x); repeat t times: h = f(x + h)`` (t=2: three passes).
* **Encoder**: one R2 block per level, 2x2x2 max pooling between levels; the
  last level is the bridge.
* **Decoder**: per level, upsample the coarser features (``upsample``:
  UpSampling3D + conv3x3x3 + BN + ReLU, the reference's ``up_conv``;
  ``transpose``: Conv3DTranspose 2x2x2 stride 2 + BN + ReLU), gate the skip
  with an additive attention gate whose gating signal is that upsampled
  coarser feature, concatenate, R2 block.
* **Attention gate**: ``psi = sigmoid(BN(conv1(relu(BN(conv1(g)) + BN(conv1(x))))))``,
  one channel, the skip is multiplied by ``psi``; inner width ``f // 2``.
* **Head**: 1x1x1 conv to ``num_classes``, sigmoid kept in float32.

Widths: the 3DR2AUNet paper (2024) gives none (it names four encoder blocks, a bridge and four
decoder blocks, no channel counts). The default ``(32, 64, 128, 256)`` is four
levels (three poolings, the last entry is the bridge) at half the reference
R2AttU-Net's 64-1024; ``filters=(16, 32, 64, 128, 256)`` gives the seed's four
pooled encoder blocks plus bridge. Small widths such as ``(4, 8, 16, 32)`` train
on a CPU in minutes. No custom layers: the model saves and loads as plain Keras.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from mslesion.models.registry import register

__all__ = ["r2_att_unet_3d", "DEFAULT_FILTERS"]

#: Default widths per level (the last is the bridge); see the module doc for their source.
DEFAULT_FILTERS = (32, 64, 128, 256)
UPSAMPLINGS = ("upsample", "transpose")


def _conv_bn_relu(x, filters: int, name: str, kernel: int = 3):
    x = layers.Conv3D(filters, kernel, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _recurrent_unit(x, filters: int, recurrence: int, name: str):
    """One conv+BN+ReLU, shared over time: ``h = f(x)``, then ``h = f(x + h)`` ``recurrence`` times."""
    conv = layers.Conv3D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")
    bn = layers.BatchNormalization(name=f"{name}_bn")
    relu = layers.Activation("relu", name=f"{name}_relu")
    h = relu(bn(conv(x)))
    for step in range(recurrence):
        h = relu(bn(conv(layers.Add(name=f"{name}_add{step + 1}")([x, h]))))
    return h


def _r2_block(x, filters: int, recurrence: int, name: str):
    """Recurrent-residual block: 1x1x1 conv to ``filters``, two recurrent units, residual add."""
    x0 = layers.Conv3D(filters, 1, padding="same", name=f"{name}_in")(x)
    h = _recurrent_unit(x0, filters, recurrence, f"{name}_rcu1")
    h = _recurrent_unit(h, filters, recurrence, f"{name}_rcu2")
    return layers.Add(name=f"{name}_res")([x0, h])


def _attention_gate(skip, gate, inner: int, name: str):
    """Additive attention (Oktay et al. 2018): the skip scaled by a one-channel map from skip and gate."""
    g = layers.Conv3D(inner, 1, name=f"{name}_wg")(gate)
    g = layers.BatchNormalization(name=f"{name}_wg_bn")(g)
    s = layers.Conv3D(inner, 1, name=f"{name}_wx")(skip)
    s = layers.BatchNormalization(name=f"{name}_wx_bn")(s)
    psi = layers.Activation("relu", name=f"{name}_relu")(layers.Add(name=f"{name}_add")([g, s]))
    psi = layers.Conv3D(1, 1, name=f"{name}_psi")(psi)
    psi = layers.BatchNormalization(name=f"{name}_psi_bn")(psi)
    psi = layers.Activation("sigmoid", name=f"{name}_sigmoid")(psi)
    return layers.Multiply(name=f"{name}_gated")([skip, psi])


def _up(x, filters: int, mode: str, name: str):
    if mode == "upsample":
        x = layers.UpSampling3D(2, name=f"{name}_upsample")(x)
        return _conv_bn_relu(x, filters, name)
    x = layers.Conv3DTranspose(filters, 2, strides=2, use_bias=False, name=f"{name}_tconv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


@register("native.r2_att_unet_3d", description="3D recurrent-residual attention U-Net (the 3DR2AUNet paper, 2024), keras.layers only",
          example_input=(64, 64, 64, 1))  # fmt: skip
def r2_att_unet_3d(
    input_shape: Sequence[int | None],
    num_classes: int = 1,
    filters: Sequence[int] = DEFAULT_FILTERS,
    recurrence: int = 2,
    upsampling: str = "upsample",
    name: str = "r2_att_unet_3d",
) -> keras.Model:
    """Build the 3D R2 attention U-Net (uncompiled, sigmoid output).

    Args:
        input_shape: ``(D, H, W, C)``; each spatial size divisible by
            ``2 ** (len(filters) - 1)`` (None allowed: any such size at call time).
        num_classes: output channels (sigmoid each).
        filters: width of each level, finest first; the last level is the bridge.
        recurrence: recurrent steps ``t`` per recurrent unit (the 3DR2AUNet paper (2024) / R2U-Net: 2).
        upsampling: ``"upsample"`` (UpSampling3D + conv) or ``"transpose"`` (Conv3DTranspose).
        name: model name.

    Returns:
        ``keras.Model`` mapping ``(B, D, H, W, C)`` to ``(B, D, H, W, num_classes)`` probabilities (float32).
    """
    input_shape = tuple(input_shape)
    filters = tuple(int(f) for f in filters)
    if len(input_shape) != 4:
        raise ValueError(f"input_shape must be (D, H, W, C), not {input_shape}")
    if len(filters) < 2:
        raise ValueError(f"filters needs at least two levels, got {filters}")
    if upsampling not in UPSAMPLINGS:
        raise ValueError(f"upsampling must be one of {UPSAMPLINGS}, not {upsampling!r}")
    if recurrence < 0:
        raise ValueError(f"recurrence must be >= 0, not {recurrence}")
    factor = 2 ** (len(filters) - 1)
    bad = [s for s in input_shape[:3] if s is not None and s % factor]
    if bad:
        raise ValueError(f"spatial sizes {input_shape[:3]} must be divisible by {factor} for {len(filters)} levels")

    inputs = keras.Input(input_shape, name="volume")
    skips, x = [], inputs
    for level, width in enumerate(filters):
        if level:
            x = layers.MaxPooling3D(2, name=f"enc{level}_pool")(x)
        x = _r2_block(x, width, recurrence, f"enc{level}")
        skips.append(x)
    for level in range(len(filters) - 2, -1, -1):
        width = filters[level]
        up = _up(x, width, upsampling, f"dec{level}_up")
        gated = _attention_gate(skips[level], up, max(width // 2, 1), f"dec{level}_att")
        x = layers.Concatenate(name=f"dec{level}_concat")([gated, up])
        x = _r2_block(x, width, recurrence, f"dec{level}")
    logits = layers.Conv3D(num_classes, 1, name="head")(x)
    outputs = layers.Activation("sigmoid", dtype="float32", name="probabilities")(logits)
    return keras.Model(inputs, outputs, name=name)
