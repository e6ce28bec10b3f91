"""Adapters for keras-unet-collection 0.1.13 (``kuc.*`` registry entries).

keras-unet-collection is imported inside the builders only. Its models are
plain Keras 3 functional models (standard layers only), so they save and load
as ``.keras`` with no custom objects.

Backbones (``backbone=``) are ``keras.applications`` names: ``VGG16``,
``VGG19``, ``ResNet50/101/152``, ``ResNet50V2/101V2/152V2``,
``DenseNet121/169/201``, ``EfficientNetB0``-``B7``; ``None`` builds the
encoder from scratch with ``filter_num`` filters. With a backbone, the encoder
depth is the backbone's (its ``filter_num`` entries are unused).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import keras

from mslesion.models.encoder import check_encoder, encoder_blocks, freeze_encoder, needs_adapter, with_channel_adapter
from mslesion.models.registry import register
from mslesion.models.weights import check_weights, is_pretrained, weights_download_guard

__all__ = ["FILTER_NUM", "KUC_BACKBONES", "kuc_unet", "kuc_unet_plus", "kuc_att_unet", "kuc_r2_unet"]

#: Default filters per level, as in the backbone report (five levels, four poolings).
FILTER_NUM = (64, 128, 256, 512, 1024)
KUC_BACKBONES = (
    ("VGG16", "VGG19", "ResNet50", "ResNet101", "ResNet152", "ResNet50V2", "ResNet101V2", "ResNet152V2")
    + ("DenseNet121", "DenseNet169", "DenseNet201")
    + tuple(f"EfficientNetB{i}" for i in range(8))
)
_REQUIRES = ("keras_unet_collection", "tensorflow")


def _resolve_encoder(backbone, encoder, freeze_backbone) -> str | int:
    """Combine the kuc-style ``freeze_backbone`` flag with mslesion's ``encoder=`` mode."""
    if backbone is None:
        return check_encoder("trainable" if encoder is None else encoder, has_encoder=False)
    if encoder is None:
        return "trainable" if freeze_backbone is False else "frozen"
    encoder = check_encoder(encoder)
    if freeze_backbone is not None and freeze_backbone != (encoder == "frozen"):
        raise ValueError(f"freeze_backbone={freeze_backbone} contradicts encoder={encoder!r}; pass only encoder=")
    return encoder


def _check_input(input_shape, n_levels: int) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (H, W, C); got {input_shape!r}")
    factor = 2 ** (n_levels - 1)
    if any(s is not None and s % factor for s in input_shape[:2]):
        raise ValueError(f"input height and width must be multiples of {factor} for {n_levels} levels; "
                         f"got {tuple(input_shape)}")
    return tuple(input_shape)


def _build(
    arch: str,
    input_shape: Sequence[int],
    num_classes: int,
    filter_num: Sequence[int],
    backbone: str | None,
    weights,
    encoder,
    freeze_backbone,
    channel_adapter: str | None,
    **options,
) -> keras.Model:
    from keras_unet_collection import models  # lazy on purpose: tf.keras-era import

    input_shape = _check_input(input_shape, len(filter_num))
    if backbone is not None and backbone not in KUC_BACKBONES:
        raise ValueError(f"unknown kuc backbone {backbone!r}; known: {list(KUC_BACKBONES)} or None")
    weights = check_weights(weights)
    if backbone is None and weights is not None:
        raise ValueError(f"weights={weights!r} needs a backbone (backbone=None builds from scratch)")
    encoder = _resolve_encoder(backbone, encoder, freeze_backbone)
    function = getattr(models, arch)
    if backbone is not None:
        options.update(backbone=backbone, weights=weights, freeze_backbone=False)

    def build_for(shape) -> keras.Model:
        with warnings.catch_warnings(), weights_download_guard(f"kuc {arch} backbone {backbone}"):
            warnings.filterwarnings("ignore", message=r"\s*Backbone .* batch norm", category=UserWarning)
            model = function(
                shape, list(filter_num), n_labels=num_classes, output_activation="Sigmoid", **options
            )
        if backbone is not None:
            _freeze_kuc_backbone(model, backbone, encoder)
        # kuc wraps input and output in lists; rewire as one tensor each so
        # fit/predict on a plain array do not warn about the input structure
        return keras.Model(model.inputs[0], model.outputs[0], name=model.name)

    if needs_adapter(input_shape, is_pretrained(weights), channel_adapter):
        return with_channel_adapter(build_for, input_shape, channel_adapter)
    return build_for(input_shape)


def _freeze_kuc_backbone(model: keras.Model, backbone: str, encoder) -> None:
    from keras_unet_collection._backbone_zoo import layer_cadidates

    encoder_model = model.get_layer(f"{backbone}_backbone")
    names = {layer.name for layer in encoder_model.layers}
    features = [f for f in layer_cadidates[backbone] if f in names]
    freeze_encoder(encoder_blocks(encoder_model.layers, features), encoder)


@register("kuc.unet", requires=_REQUIRES, description="U-Net (kuc unet_2d), optional keras.applications backbone")
def kuc_unet(
    input_shape: Sequence[int],
    num_classes: int = 1,
    filter_num: Sequence[int] = FILTER_NUM,
    backbone: str | None = None,
    weights=None,
    encoder: str | int | None = None,
    freeze_backbone: bool | None = None,
    batch_norm: bool = True,
    pool: bool | str = True,
    unpool: bool | str = True,
    stack_num_down: int = 2,
    stack_num_up: int = 2,
    channel_adapter: str | None = None,
    **options,
) -> keras.Model:
    """U-Net from keras-unet-collection ``unet_2d``, sigmoid output.

    Args:
        input_shape: ``(H, W, C)``; H and W multiples of ``2**(len(filter_num)-1)``.
        num_classes: output channels (independent sigmoids).
        filter_num: filters per level (scratch encoder and decoder).
        backbone: ``keras.applications`` name (``"VGG16"``, ...) or ``None``.
        weights: ``None`` (random), ``"imagenet"`` (download or Keras cache),
            or a local notop ``.h5`` path; needs a backbone.
        encoder: ``"frozen"``, ``"trainable"`` or int N (first N blocks
            frozen), see :mod:`mslesion.models.encoder`. Default: from
            ``freeze_backbone`` (frozen, kuc's default).
        freeze_backbone: kuc's flag; ``True`` = ``encoder="frozen"``.
        batch_norm: batch norm after each conv of the decoder (and scratch encoder).
        pool: ``True``/``"max"``, ``"ave"``, ``False`` (strided conv) downsampling.
        unpool: ``True``/``"bilinear"``, ``"nearest"``, ``False`` (transposed conv).
        stack_num_down, stack_num_up: convs per encoder / decoder level.
        channel_adapter: C != 3 with pretrained weights puts a learned 1x1
            Conv2D C -> 3 in front (``"conv"``, default); ``"repeat"`` tiles 1
            channel to 3. Without pretrained weights the model takes C channels.
        **options: passed to ``unet_2d`` (``activation``, ``name``).
    """
    return _build("unet_2d", input_shape, num_classes, filter_num, backbone, weights, encoder, freeze_backbone,
                  channel_adapter, batch_norm=batch_norm, pool=pool, unpool=unpool,
                  stack_num_down=stack_num_down, stack_num_up=stack_num_up, **options)


@register("kuc.unet_plus", requires=_REQUIRES, description="UNet++ (kuc unet_plus_2d), optional backbone")
def kuc_unet_plus(
    input_shape: Sequence[int],
    num_classes: int = 1,
    filter_num: Sequence[int] = FILTER_NUM,
    backbone: str | None = None,
    weights=None,
    encoder: str | int | None = None,
    freeze_backbone: bool | None = None,
    batch_norm: bool = True,
    pool: bool | str = True,
    unpool: bool | str = True,
    stack_num_down: int = 2,
    stack_num_up: int = 2,
    channel_adapter: str | None = None,
    **options,
) -> keras.Model:
    """UNet++ from keras-unet-collection ``unet_plus_2d`` (no deep supervision), sigmoid output.

    Arguments as :func:`kuc_unet`.
    """
    if options.get("deep_supervision"):
        raise ValueError("deep_supervision=True gives several outputs; registry models have one")
    return _build("unet_plus_2d", input_shape, num_classes, filter_num, backbone, weights, encoder, freeze_backbone,
                  channel_adapter, batch_norm=batch_norm, pool=pool, unpool=unpool,
                  stack_num_down=stack_num_down, stack_num_up=stack_num_up, **options)


@register("kuc.att_unet", requires=_REQUIRES, description="Attention U-Net (kuc att_unet_2d), optional backbone")
def kuc_att_unet(
    input_shape: Sequence[int],
    num_classes: int = 1,
    filter_num: Sequence[int] = FILTER_NUM,
    backbone: str | None = None,
    weights=None,
    encoder: str | int | None = None,
    freeze_backbone: bool | None = None,
    batch_norm: bool = True,
    pool: bool | str = True,
    unpool: bool | str = True,
    stack_num_down: int = 2,
    stack_num_up: int = 2,
    channel_adapter: str | None = None,
    **options,
) -> keras.Model:
    """Attention U-Net from keras-unet-collection ``att_unet_2d``, sigmoid output.

    Arguments as :func:`kuc_unet`; ``options`` may set ``atten_activation``
    and ``attention`` (``"add"`` or ``"multiply"``).
    """
    return _build("att_unet_2d", input_shape, num_classes, filter_num, backbone, weights, encoder, freeze_backbone,
                  channel_adapter, batch_norm=batch_norm, pool=pool, unpool=unpool,
                  stack_num_down=stack_num_down, stack_num_up=stack_num_up, **options)


@register("kuc.r2_unet", requires=_REQUIRES, description="Recurrent residual U-Net (kuc r2_unet_2d), from scratch")
def kuc_r2_unet(
    input_shape: Sequence[int],
    num_classes: int = 1,
    filter_num: Sequence[int] = FILTER_NUM,
    batch_norm: bool = True,
    pool: bool | str = True,
    unpool: bool | str = True,
    stack_num_down: int = 2,
    stack_num_up: int = 2,
    recur_num: int = 2,
    encoder: str | int = "trainable",
    **options,
) -> keras.Model:
    """R2 U-Net from keras-unet-collection ``r2_unet_2d`` (no backbone option), sigmoid output.

    Args as :func:`kuc_unet`; ``recur_num`` recurrent steps per conv. The
    encoder is always trained from scratch (``encoder="trainable"``).
    """
    for key in ("backbone", "weights", "freeze_backbone", "channel_adapter"):
        if key in options:
            raise ValueError(f"kuc.r2_unet has no pretrained backbone; drop {key}=")
    return _build("r2_unet_2d", input_shape, num_classes, filter_num, None, None, encoder, None, None,
                  batch_norm=batch_norm, pool=pool, unpool=unpool, stack_num_down=stack_num_down,
                  stack_num_up=stack_num_up, recur_num=recur_num, **options)
