"""Attention U-Net with pyramid input (Røvang's (2021) chapter 6), native Keras 3 (``native.att_unet_pyramid``).

Architecture (``L = len(filters)`` levels, ``L - 1`` poolings, ``L - 1`` attention gates)::

    encoder, level l = 0 .. L-1 (l = L-1 is the bottleneck, level 0 reads the input alone):
        x_l   = conv block f_l (concat[maxpool2x2(x_{l-1}), maxpool2x2^l(input)])      (pyramid)
    decoder, deepest first, l = L-2 .. 0 (g: the coarser decoder output, first the bottleneck):
        psi_l = attention gate(skip x_l, gating g)     (B, H/2^l, W/2^l, 1), layer "attention_<l>"
        g     = conv block f_l (concat[Conv2DTranspose(f_l, 2x2, stride 2)(g), x_l * psi_l])
    output = Conv2D(num_classes, 1x1, bias-free, sigmoid, float32)(g)

- Conv block: two 3x3 convs (bias-free, zero "same" padding), each followed by
  batch or group normalisation and ReLU or Mish (Røvang's (2021) sections 2.5, 6.1, 8.8).
- Pyramid input (Røvang's (2021) section 6.2, after Abraham & Khan 2019): the input
  image max-pooled (2x2, stride 2, cascaded) to each coarser level's resolution
  is concatenated to that level's input, bottleneck included.
- Attention gates (Oktay et al. 2018; Røvang's (2021) eqs 6.1-6.2): additive attention
  ``psi = sigmoid(conv1x1(relu(Wx x + Wg g + b_xg)) + b_psi)``, with ``x`` the
  skip (``F_int = max(1, f_l // 2)`` intermediate channels) and ``g`` the
  gating signal from the coarser decoder level; ``Wg g`` is computed at the
  coarse resolution and bilinearly upsampled to the skip's resolution (a 1x1
  conv commutes with bilinear upsampling, so this equals upsampling ``g``
  first). The skip is multiplied by ``psi`` (broadcast over channels). Røvang (2021)
  figure 6.4 instead strides ``x`` down to ``g`` and upsamples ``psi``; here
  the coefficients are computed at the skip's full resolution.
- Only standard Keras layers: saves/loads as ``.keras`` with no custom objects
  and runs on the TensorFlow, JAX and PyTorch backends.

Default widths ``(32, 64, 128, 256, 512)``: Røvang's (2021) "UNet256", half the
original U-Net's (64 ... 1024) with a 512-map bottleneck (figure 6.2 caption)
and 16x16 deepest maps at 256x256 input (four poolings). The seed's text lists
``[32, 64, 256, 512]``, which has one level too few for its own 16x16 and
skips 128; read as a typo for the five-level list.

Parameter counts (``num_classes=1``, batch norm, pyramid on; total / trainable / total with ``pyramid=False``):

- 256x256x1, default widths: 7,908,036 / 7,902,148 / 7,899,396;
- 64x64x3, ``filters=(8, 16, 32)`` (the tests' size): 31,746 / 31,426 / 30,450.

Group norm has the same trainable count and no non-trainable weights (BN's
moving statistics). Training speed, 256x256x1, batch 8, TensorFlow CPU (2
shared cores): about 1.6 img/s.

>>> model = build_model("native.att_unet_pyramid", input_shape=(256, 256, 1))
>>> maps = attention_maps(model, images)     # {"attention_3": (B, 32, 32, 1), ..., "attention_0": (B, 256, 256, 1)}
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import keras
import numpy as np
from keras import layers

from mslesion.models.registry import register

__all__ = ["FILTERS", "att_unet_pyramid", "attention_layer_names", "attention_maps"]

#: Røvang's (2021) reduced "UNet256" widths per level (see the module docstring).
FILTERS = (32, 64, 128, 256, 512)
ACTIVATIONS = ("relu", "mish")
NORMS = ("batch", "group")
_ATTENTION = re.compile(r"^attention_(\d+)$")


def _check(input_shape, filters, activation, norm, groups) -> tuple:
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (H, W, C); got {input_shape!r}")
    if len(filters) < 2:
        raise ValueError(f"need at least two levels (one attention gate); got filters={filters!r}")
    factor = 2 ** (len(filters) - 1)
    if any(s is not None and s % factor for s in input_shape[:2]):
        raise ValueError(f"input height and width must be multiples of {factor} for {len(filters)} levels; "
                         f"got {tuple(input_shape)}")  # fmt: skip
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}; got {activation!r}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}; got {norm!r}")
    if norm == "group" and any(f % groups for f in filters):
        raise ValueError(f"group norm needs every width divisible by groups={groups}; got filters={filters!r}")
    return tuple(input_shape)


def _norm(norm: str, groups: int, name: str) -> layers.Layer:
    if norm == "group":
        return layers.GroupNormalization(groups=groups, name=name)
    return layers.BatchNormalization(name=name)


def _conv_block(x, filters: int, activation: str, norm: str, groups: int, name: str):
    """Two (3x3 conv -> norm -> activation) units."""
    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = _norm(norm, groups, f"{name}_norm{i}")(x)
        x = layers.Activation(activation, name=f"{name}_act{i}")(x)
    return x


def _attention_gate(skip, gate, level: int):
    """Additive attention gate: returns ``(skip * psi, psi)``, ``psi`` at the skip's resolution."""
    inter = max(1, skip.shape[-1] // 2)
    theta_x = layers.Conv2D(inter, 1, use_bias=False, name=f"gate_{level}_wx")(skip)
    phi_g = layers.Conv2D(inter, 1, name=f"gate_{level}_wg")(gate)  # carries b_xg
    phi_g = layers.UpSampling2D(2, interpolation="bilinear", name=f"gate_{level}_up")(phi_g)
    q = layers.Add(name=f"gate_{level}_add")([theta_x, phi_g])
    q = layers.Activation("relu", name=f"gate_{level}_relu")(q)
    psi = layers.Conv2D(1, 1, activation="sigmoid", name=f"attention_{level}")(q)
    return layers.Multiply(name=f"gate_{level}_apply")([skip, psi]), psi


@register("native.att_unet_pyramid", description="attention U-Net with pyramid input (Røvang 2021), native Keras 3")
def att_unet_pyramid(
    input_shape: Sequence[int],
    num_classes: int = 1,
    filters: Sequence[int] = FILTERS,
    activation: str = "relu",
    norm: str = "batch",
    groups: int = 4,
    pyramid: bool = True,
    name: str = "att_unet_pyramid",
) -> keras.Model:
    """Attention U-Net with optional image-pyramid input, sigmoid output (see the module docstring).

    Args:
        input_shape: ``(H, W, C)``; H and W multiples of ``2**(len(filters)-1)``;
            any C (1 FLAIR slice, 3 adjacent slices, FLAIR + T1, ...).
        num_classes: output channels (independent sigmoids).
        filters: widths per level, shallowest first; the last is the bottleneck.
        activation: ``"relu"`` or ``"mish"`` (Røvang's (2021) section 8.8).
        norm: ``"batch"`` or ``"group"`` normalisation after every 3x3 conv.
        groups: G of group normalisation (Røvang (2021) tried 4 and 32; 4 did better);
            every width must be divisible by it.
        pyramid: concatenate the max-pooled input image to each coarser level's input.
        name: model name.

    Returns:
        Uncompiled ``keras.Model`` ``(B, H, W, C) -> (B, H, W, num_classes)``,
        float32 probabilities; the gates' coefficients are the layers ``attention_<level>``
        (level 0 = full resolution), see :func:`attention_maps`.
    """
    filters = tuple(int(f) for f in filters)
    input_shape = _check(input_shape, filters, activation, norm, groups)
    inputs = keras.Input(input_shape, name="image")
    x, image, skips = inputs, inputs, []
    for level, width in enumerate(filters):
        if level > 0:
            x = layers.MaxPooling2D(2, name=f"enc_{level}_pool")(x)
            if pyramid:
                image = layers.MaxPooling2D(2, name=f"pyramid_{level}")(image)
                x = layers.Concatenate(name=f"enc_{level}_pyramid")([x, image])
        block = "bottleneck" if level == len(filters) - 1 else f"enc_{level}"
        x = _conv_block(x, width, activation, norm, groups, block)
        skips.append(x)
    skips.pop()  # the bottleneck output is the first gating signal, not a skip
    for level in reversed(range(len(filters) - 1)):
        gated, _ = _attention_gate(skips[level], x, level)
        up = layers.Conv2DTranspose(filters[level], 2, strides=2, name=f"dec_{level}_up")(x)
        x = layers.Concatenate(name=f"dec_{level}_concat")([up, gated])
        x = _conv_block(x, filters[level], activation, norm, groups, f"dec_{level}")
    outputs = layers.Conv2D(num_classes, 1, use_bias=False, activation="sigmoid", dtype="float32", name="output")(x)
    return keras.Model(inputs, outputs, name=name)


def attention_layer_names(model: keras.Model) -> list[str]:
    """Names of the model's attention-coefficient layers (``attention_<level>``), deepest first."""
    found = [(int(m.group(1)), layer.name) for layer in model.layers if (m := _ATTENTION.match(layer.name))]
    if not found:
        raise ValueError(f"model {model.name!r} has no attention_<level> layers (not an attention U-Net?)")
    return [name for _, name in sorted(found, reverse=True)]


def attention_maps(model: keras.Model, x, batch_size: int = 8) -> dict[str, np.ndarray]:
    """Attention coefficients of every gate for an input batch.

    Args:
        model: a ``native.att_unet_pyramid`` model (built or loaded from ``.keras``).
        x: ``(B, H, W, C)`` float batch, preprocessed as for training.
        batch_size: images per forward pass.

    Returns:
        ``{"attention_<level>": (B, H / 2**level, W / 2**level, 1) float32 array in [0, 1]}``,
        deepest gate first (insertion order).
    """
    names = attention_layer_names(model)
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names], name=f"{model.name}_attention")
    outputs = probe.predict(np.asarray(x, dtype="float32"), batch_size=batch_size, verbose=0)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return {n: np.asarray(o, dtype=np.float32) for n, o in zip(names, outputs)}
