"""FC-DenseNet (Tiramisu) + squeeze-and-attention + ConvLSTM on slice triplets (Rondinella et al. 2023), native Keras 3.

Registry key ``native.fc_densenet``. Rondinella et al.'s (2023) section 3.3, table 1, table 5;
details (SA wiring, bottleneck, LSTM) follow the authors' released PyTorch
code (github ictlab-unict/attention-cnn-MS-segmentation, ``FCDenseNet67``
with ``grow_rate=12`` as its ``train.py`` builds it).

Input ``(H, W, 3M)`` from the 2.5D prep (``mslesion prep --context 3``),
channels modality-major (``m0[-1], m0[0], m0[+1], m1[-1], ...``) as in
:mod:`mslesion.data.slicing`; it is split into the slices previous, current, next,
each ``(H, W, M)``. Per slice, one shared encoder (nested model
``slice_encoder``, called once per slice, so its weights count once)::

    3x3 conv (initial_filters)
    blocks x [dense block (layers_per_block x BN-ReLU-3x3 conv(growth)-SpatialDropout, concatenated)
              -> SA block -> skip_l -> transition down (BN-ReLU-1x1 conv-SpatialDropout-2x2 max pool)]
    bottleneck dense block (only its new growth*bottleneck_layers maps, as in Tiramisu)

Bottleneck: a unidirectional ``ConvLSTM2D`` (3x3, bias-free like the
reference cell, zero initial state) runs over the slices' bottleneck maps in
order previous -> current -> next. Decoder (current slice only)::

    blocks x [3x3 transposed conv stride 2 -> concat skip_l of the CURRENT slice
              -> dense block (new maps only, except the last: all) -> SA block (all but the last)]
    1x1 conv (num_classes) -> sigmoid (float32)

SA block (Zhong et al. 2020 as the reference implements it): ``main =
conv_block(x)``, ``att = upsample2(conv_block(avgpool2(x)))``, ``out = att *
main + att``, with ``conv_block`` = (3x3 conv, BN, ReLU) x 2, keeping the width.

Ablation (table 5): ``attention`` toggles every SA block; ``lstm=False`` feeds
only the current slice through the network (as the reference does: without
the LSTM, slices never meet and only the central output is scored), so the
plain variant is a 2D FC-DenseNet of the central slice. Parameter counts
(trainable, ``(160, 160, 3)``, defaults, ``num_classes=1``): FC-DenseNet
2,053,609; +ConvLSTM 2,312,809; +SA 13,241,689; +SA+ConvLSTM 13,500,889
(13,543,129 with the BN moving statistics).

Table 1 counts 13,242,782. This module reproduces it exactly with the
reference's own settings, ``input_shape=(160, 160, 9)`` (FLAIR replicated to
3 channels per slice), ``num_classes=2``, ``lstm=False``: table 1 omits the
ConvLSTM's 259,200 weights and, although it draws four dense layers per block,
counts five (four give 9,185,618), hence ``layers_per_block=5``. The default
model differs by the first conv on 1 channel (-864), one sigmoid instead of a
2-way softmax (-229) and the ConvLSTM (+259,200).

``lstm_output="last"`` (default) decodes the LSTM's state after the next
slice, so all three slices count; ``"current"`` decodes its state at the
current slice, as the reference code does (the next slice is then unused and
is not computed). Height and width must be multiples of ``2**blocks``.

Untrained, in inference mode, the model overflows: BN's moving statistics
start as the identity, so the SA products square the scale at every level
(the default model predicts NaN before any training; the reference has the
same property). Training mode, and inference once the statistics have been
learnt (``mslesion.train.batchnorm``), are well scaled.

>>> model = build_model("native.fc_densenet", input_shape=(160, 160, 3))
>>> small = build_model("native.fc_densenet", input_shape=(64, 64, 3), growth_rate=4, blocks=3,
...                     layers_per_block=2, initial_filters=8, dropout=0.0, attention=False)
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers, ops

from mslesion.models.registry import register

__all__ = ["CONTEXT", "SLICE_NAMES", "ContextSlice", "StackSlices", "fc_densenet"]

#: Slices per input (2.5D triplet) and their names, in LSTM order.
CONTEXT = 3
SLICE_NAMES = ("previous", "current", "next")
LSTM_OUTPUTS = ("last", "current")
_CONV = {"kernel_initializer": "he_uniform", "padding": "same"}  # the reference's kaiming_uniform, zero bias


@keras.saving.register_keras_serializable("mslesion")
class ContextSlice(keras.layers.Layer):
    """One slice of a modality-major 2.5D stack: ``(B, H, W, context*M) -> (B, H, W, M)``.

    Channel ``m * context + index`` of the input is modality ``m`` at slice
    offset ``index - context // 2`` (:func:`mslesion.data.slicing.channel_names`).
    """

    def __init__(self, index: int, context: int = CONTEXT, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= index < context:
            raise ValueError(f"slice index must be in [0, {context}); got {index}")
        self.index = int(index)
        self.context = int(context)

    def call(self, inputs):
        return ops.take(inputs, list(range(self.index, inputs.shape[-1], self.context)), axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] // self.context)

    def get_config(self):
        return {**super().get_config(), "index": self.index, "context": self.context}


@keras.saving.register_keras_serializable("mslesion")
class StackSlices(keras.layers.Layer):
    """Stack same-shape maps on a new time axis: ``T x (B, h, w, c) -> (B, T, h, w, c)``."""

    def call(self, inputs):
        return ops.stack(inputs, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], len(input_shape), *input_shape[0][1:])


def _check(input_shape, blocks, lstm_output) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (H, W, C); got {input_shape!r}")
    channels = input_shape[-1]
    if channels is None or channels % CONTEXT:
        raise ValueError(
            f"native.fc_densenet needs 2.5D slice triplets: C = 3 x modalities channels from "
            f"`mslesion prep --context 3` (previous, current, next slice); got C={channels}"
        )
    factor = 2**blocks
    if any(s is not None and s % factor for s in input_shape[:2]):
        raise ValueError(f"input height and width must be multiples of {factor} for {blocks} blocks; "
                         f"got {tuple(input_shape)}")  # fmt: skip
    if lstm_output not in LSTM_OUTPUTS:
        raise ValueError(f"lstm_output must be one of {LSTM_OUTPUTS}; got {lstm_output!r}")
    return tuple(input_shape)


def _dense_block(x, n_layers: int, growth_rate: int, dropout: float, name: str, new_only: bool):
    """Tiramisu dense block: each layer sees all earlier maps; returns input + new maps, or new maps only."""
    new = []
    for i in range(n_layers):
        y = layers.BatchNormalization(name=f"{name}_l{i}_bn")(x)
        y = layers.ReLU(name=f"{name}_l{i}_relu")(y)
        y = layers.Conv2D(growth_rate, 3, name=f"{name}_l{i}_conv", **_CONV)(y)
        if dropout:
            y = layers.SpatialDropout2D(dropout, name=f"{name}_l{i}_drop")(y)
        new.append(y)
        x = layers.Concatenate(name=f"{name}_l{i}_cat")([x, y])
    if not new_only:
        return x
    return new[0] if len(new) == 1 else layers.Concatenate(name=f"{name}_new")(new)


def _conv_block(x, filters: int, name: str):
    for i in range(2):
        x = layers.Conv2D(filters, 3, name=f"{name}_conv{i}", **_CONV)(x)
        x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.ReLU(name=f"{name}_relu{i}")(x)
    return x


def _squeeze_attention(x, name: str):
    """SA block: ``att * conv_block(x) + att`` with ``att`` from a 2x-pooled branch, upsampled (nearest)."""
    filters = x.shape[-1]
    main = _conv_block(x, filters, f"{name}_main")
    att = layers.AveragePooling2D(2, name=f"{name}_pool")(x)
    att = _conv_block(att, filters, f"{name}_att")
    att = layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_up")(att)
    return layers.Add(name=f"{name}_out")([layers.Multiply(name=f"{name}_mul")([att, main]), att])


def _encoder(slice_shape, blocks, layers_per_block, bottleneck_layers, growth_rate, initial_filters, dropout,
             attention) -> keras.Model:  # fmt: skip
    """Per-slice encoder: ``(H, W, M) -> [skip_0, ..., skip_{blocks-1}, bottleneck new maps]``."""
    inputs = keras.Input(slice_shape, name="slice")
    x = layers.Conv2D(initial_filters, 3, name="first_conv", **_CONV)(inputs)
    skips = []
    for level in range(blocks):
        x = _dense_block(x, layers_per_block, growth_rate, dropout, f"down{level}_dense", new_only=False)
        if attention:
            x = _squeeze_attention(x, f"down{level}_sa")
        skips.append(x)
        x = layers.BatchNormalization(name=f"down{level}_td_bn")(x)
        x = layers.ReLU(name=f"down{level}_td_relu")(x)
        x = layers.Conv2D(x.shape[-1], 1, name=f"down{level}_td_conv", **_CONV)(x)
        if dropout:
            x = layers.SpatialDropout2D(dropout, name=f"down{level}_td_drop")(x)
        x = layers.MaxPooling2D(2, name=f"down{level}_td_pool")(x)
    x = _dense_block(x, bottleneck_layers, growth_rate, dropout, "bottleneck_dense", new_only=True)
    return keras.Model(inputs, [*skips, x], name="slice_encoder")


@register("native.fc_densenet", description="FC-DenseNet + squeeze-and-attention + ConvLSTM on 2.5D triplets "
                                            "(Rondinella et al. 2023)")  # fmt: skip
def fc_densenet(
    input_shape: Sequence[int],
    num_classes: int = 1,
    growth_rate: int = 12,
    layers_per_block: int = 5,
    blocks: int = 5,
    bottleneck_layers: int | None = None,
    initial_filters: int = 48,
    dropout: float = 0.2,
    attention: bool = True,
    lstm: bool = True,
    lstm_kernel_size: int = 3,
    lstm_output: str = "last",
) -> keras.Model:
    """FC-DenseNet + SA + ConvLSTM of Rondinella et al. (2023) (see the module docstring), sigmoid output.

    Args:
        input_shape: ``(H, W, 3M)``: 2.5D triplets of M modalities, modality-major;
            H and W multiples of ``2**blocks``.
        num_classes: output channels (independent sigmoids).
        growth_rate: maps each dense layer adds (Rondinella et al. 2023: 12).
        layers_per_block: dense layers per down/up block (Rondinella et al.'s (2023) count: 5).
        blocks: dense blocks (and poolings) on each path.
        bottleneck_layers: dense layers in the bottleneck; default ``layers_per_block``.
        initial_filters: filters of the first 3x3 conv (48).
        dropout: SpatialDropout2D rate in dense layers and transitions down (0.2); 0 drops the layers.
        attention: squeeze-and-attention blocks on both paths.
        lstm: ConvLSTM2D over the slices at the bottleneck; False uses the current slice only.
        lstm_kernel_size: ConvLSTM kernel (3).
        lstm_output: ``"last"`` (state after previous, current, next) or
            ``"current"`` (state after previous, current: the reference code).

    Returns:
        Uncompiled model ``(B, H, W, 3M) -> (B, H, W, num_classes)`` for the current slice.

    Raises:
        ValueError: C not a multiple of 3 (needs ``mslesion prep --context 3``), H or W
            not a multiple of ``2**blocks``, or an unknown ``lstm_output``.
    """
    height, width, channels = _check(input_shape, blocks, lstm_output)
    bottleneck_layers = layers_per_block if bottleneck_layers is None else bottleneck_layers
    encoder = _encoder((height, width, channels // CONTEXT), blocks, layers_per_block, bottleneck_layers,
                       growth_rate, initial_filters, dropout, attention)  # fmt: skip
    inputs = keras.Input(tuple(input_shape), name="triplet")
    if lstm:
        used = SLICE_NAMES if lstm_output == "last" else SLICE_NAMES[:2]
        features = {n: encoder(ContextSlice(SLICE_NAMES.index(n), name=f"{n}_slice")(inputs)) for n in used}
        sequence = StackSlices(name="bottleneck_sequence")([features[n][-1] for n in used])
        x = layers.ConvLSTM2D(growth_rate * bottleneck_layers, lstm_kernel_size, padding="same", use_bias=False,
                              kernel_initializer="he_uniform", name="bottleneck_convlstm")(sequence)  # fmt: skip
        skips = features["current"][:-1]
    else:
        *skips, x = encoder(ContextSlice(SLICE_NAMES.index("current"), name="current_slice")(inputs))
    for level in reversed(range(blocks)):
        last = level == 0
        x = layers.Conv2DTranspose(x.shape[-1], 3, strides=2, name=f"up{level}_tu", **_CONV)(x)
        x = layers.Concatenate(name=f"up{level}_skip")([x, skips[level]])
        x = _dense_block(x, layers_per_block, growth_rate, dropout, f"up{level}_dense", new_only=not last)
        if attention and not last:
            x = _squeeze_attention(x, f"up{level}_sa")
    x = layers.Conv2D(num_classes, 1, name="final_conv", kernel_initializer="he_uniform")(x)
    outputs = layers.Activation("sigmoid", dtype="float32", name="mask")(x)
    return keras.Model(inputs, outputs, name="fc_densenet")
