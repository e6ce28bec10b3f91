"""Adapters for segmentation_models 1.0.1 (``sm.*`` registry entries).

segmentation_models is imported inside the builders only, after
``import mslesion`` has set ``SM_FRAMEWORK=tf.keras`` (the only framework it
supports on Keras 3). :data:`SM_BACKBONES` records which of its 32 backbones
build *and* train one step on this stack (TensorFlow 2.21, Keras 3.15), as
measured by a survey script (Unet, 64x64x3 input, 128x128 where the backbone
needs more, random weights, one ``fit`` step of binary cross-entropy on a
batch of 2); failing ones raise :class:`BackboneUnavailableError`.

Encoder modes follow :mod:`mslesion.models.encoder`: ``"frozen"`` freezes BN
too (unlike sm's ``encoder_freeze``). Weights: ``None``, ``"imagenet"`` or a
local notop ``.h5`` file (passed to sm as ``encoder_weights``).
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Sequence

import keras

from mslesion.models.encoder import check_encoder, encoder_blocks, freeze_encoder, needs_adapter, with_channel_adapter
from mslesion.models.errors import BackboneUnavailableError, ModelError
from mslesion.models.registry import register
from mslesion.models.weights import check_weights, is_pretrained, weights_download_guard

__all__ = ["SM_BACKBONES", "SM_ARCH_CHECKED", "working_backbones", "import_sm", "sm_unet", "sm_fpn", "sm_linknet"]

_DENSENET = "build fails: Keras 3 rejects the layer name 'conv1/conv' ('/' not allowed in layer names)"
_SE = "Lambda(expand_dims) layers, loaded by mslesion.models.load_model"
_GROUPED = "Lambda(slice_tensor) layers, loaded by mslesion.models.load_model; slow to build"

#: Every name of ``sm.get_available_backbone_names()`` -> (status, note). Survey on
#: TF 2.21 / Keras 3.15 / sm 1.0.1: Unet built with random weights at
#: 64x64x3 (inceptionv3: 128x128, it needs >= 75 px) and trained one ``fit``
#: step; params are the Unet's; the time is build + one step on 2 CPU cores.
SM_BACKBONES: dict[str, tuple[str, str]] = {
    "resnet18": ("works", "14.3M params, 6 s"),
    "resnet34": ("works", "24.5M params, 9 s"),
    "resnet50": ("works", "32.6M params, 12 s"),
    "resnet101": ("works", "51.6M params, 24 s"),
    "resnet152": ("works", "67.3M params, 37 s"),
    "seresnet18": ("works", f"14.4M params, 8 s; {_SE}"),
    "seresnet34": ("works", f"24.6M params, 12 s; {_SE}"),
    "seresnet50": ("works", f"35.1M params, 16 s; {_SE}"),
    "seresnet101": ("works", f"56.4M params, 35 s; {_SE}"),
    "seresnet152": ("works", f"73.9M params, 52 s; {_SE}"),
    "seresnext50": ("works", f"34.6M params, 51 s; {_SE}; {_GROUPED}"),
    "seresnext101": ("works", f"56.1M params, 106 s; {_SE}; {_GROUPED}"),
    "senet154": ("works", f"122.3M params, 285 s; {_SE}; {_GROUPED}"),
    "resnext50": ("works", f"32.1M params, 51 s; {_GROUPED}"),
    "resnext101": ("works", f"51.3M params, 106 s; {_GROUPED}"),
    "vgg16": ("works", "23.8M params, 4 s"),
    "vgg19": ("works", "29.1M params, 5 s"),
    "densenet121": ("fails", _DENSENET),
    "densenet169": ("fails", _DENSENET),
    "densenet201": ("fails", _DENSENET),
    "inceptionresnetv2": ("works", "62.1M params, 49 s; holds a Python lambda: load_model(path, safe_mode=False)"),
    "inceptionv3": ("works", "29.9M params, 19 s at 128 px; input must be >= 75x75"),
    "mobilenet": ("works", "8.3M params, 8 s"),
    "mobilenetv2": ("works", "8.0M params, 14 s"),
    "efficientnetb0": ("works", "10.1M params, 19 s; FixedDropout layers (load_model registers them)"),
    "efficientnetb1": ("works", "12.6M params, 26 s"),
    "efficientnetb2": ("works", "14.3M params, 26 s"),
    "efficientnetb3": ("works", "17.9M params, 32 s"),
    "efficientnetb4": ("works", "25.7M params, 31 s"),
    "efficientnetb5": ("works", "37.5M params, 40 s"),
    "efficientnetb6": ("works", "50.9M params, 50 s"),
    "efficientnetb7": ("works", "75.0M params, 63 s"),
}

#: FPN and Linknet, surveyed the same way on a subset; other working Unet
#: backbones are assumed to work (same encoder, plain decoder layers).
SM_ARCH_CHECKED: dict[str, dict[str, str]] = {
    "fpn": {"vgg16": "works", "resnet34": "works", "efficientnetb0": "works", "mobilenetv2": "works",
            "densenet121": "fails (same layer-name error)"},
    "linknet": {"vgg16": "works", "resnet34": "works", "efficientnetb0": "works", "mobilenetv2": "works",
                "densenet121": "fails (same layer-name error)"},
}

_ARCHS = {"unet": "Unet", "fpn": "FPN", "linknet": "Linknet"}
_REQUIRES = ("segmentation_models", "classification_models", "efficientnet", "keras_applications", "tensorflow")


def _framework_problem() -> str | None:
    """Why segmentation_models cannot work here, or None (it needs SM_FRAMEWORK=tf.keras on Keras 3)."""
    framework = os.environ.get("SM_FRAMEWORK", "tf.keras")
    if framework.lower() != "tf.keras":
        return f"SM_FRAMEWORK={framework!r}; segmentation_models only works with 'tf.keras' on Keras 3"
    return None


def working_backbones() -> list[str]:
    """Backbones marked ``works`` in :data:`SM_BACKBONES`."""
    return [name for name, (status, _) in SM_BACKBONES.items() if status == "works"]


def import_sm():
    """Import segmentation_models quietly (it prints its framework) and check it runs on tf.keras.

    Raises:
        ModelError: segmentation_models was set to another framework.
    """
    import mslesion  # noqa: F401  (sets SM_FRAMEWORK=tf.keras before the import below)

    with contextlib.redirect_stdout(io.StringIO()):
        import segmentation_models as sm
    if sm.framework() != "tf.keras":
        raise ModelError(
            f"segmentation_models runs on {sm.framework()!r} (SM_FRAMEWORK={os.environ.get('SM_FRAMEWORK')!r}); "
            "on Keras 3 it only works with SM_FRAMEWORK=tf.keras: unset it or import mslesion first"
        )
    return sm


def _check_backbone(backbone: str) -> None:
    status, note = SM_BACKBONES.get(backbone, (None, None))
    if status == "works":
        return
    if status is None:
        raise BackboneUnavailableError(f"unknown sm backbone {backbone!r}; working: {working_backbones()}")
    raise BackboneUnavailableError(
        f"sm backbone {backbone!r} does not work on this stack (Keras {keras.__version__}, "
        f"segmentation_models 1.0.1): {note}. Working: {working_backbones()}"
    )


def _build(arch, input_shape, num_classes, backbone, weights, encoder, channel_adapter, options) -> keras.Model:
    sm = import_sm()
    from segmentation_models.backbones.backbones_factory import Backbones

    _check_backbone(backbone)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (H, W, C); got {input_shape!r}")
    if any(s is not None and s % 32 for s in input_shape[:2]):
        raise ValueError(f"sm models need height and width multiples of 32; got {tuple(input_shape)}")
    weights = check_weights(weights)
    encoder = check_encoder(encoder)
    for key in ("encoder_weights", "encoder_freeze"):
        if key in options:
            raise TypeError(f"pass weights= and encoder= instead of sm's {key}=")

    def build_for(shape) -> keras.Model:
        captured, original = [], Backbones.get_backbone

        def capture(*args, **kwargs):
            captured.append(original(*args, **kwargs))
            return captured[-1]

        Backbones.get_backbone = capture  # sees the encoder sm builds, to freeze it
        try:
            with weights_download_guard(f"sm.{arch} backbone {backbone}"):
                model = getattr(sm, _ARCHS[arch])(
                    backbone, input_shape=tuple(shape), classes=num_classes, activation="sigmoid",
                    encoder_weights=weights, **options,
                )
        finally:
            del Backbones.get_backbone
        features = list(Backbones._default_feature_layers[backbone])[::-1]  # shallowest first
        freeze_encoder(encoder_blocks(captured[0].layers, features), encoder)
        return model

    if needs_adapter(input_shape, is_pretrained(weights), channel_adapter):
        return with_channel_adapter(build_for, input_shape, channel_adapter)
    return build_for(input_shape)


_ARGS_DOC = """
    Args:
        input_shape: ``(H, W, C)``, H and W multiples of 32.
        num_classes: output channels (independent sigmoids).
        backbone: a ``works`` name of :data:`SM_BACKBONES`.
        weights: ``None`` (random), ``"imagenet"`` (download or Keras cache) or
            a local notop ``.h5`` file; becomes sm's ``encoder_weights``.
        encoder: ``"trainable"`` (sm default), ``"frozen"`` (BN included) or
            int N: first N encoder blocks frozen.
        channel_adapter: C != 3 with pretrained weights puts a learned 1x1
            Conv2D C -> 3 in front (``"conv"``, default); ``"repeat"`` tiles 1
            channel to 3. Without pretrained weights the model takes C channels.
        **options: passed to sm ({extra}).
"""


@register("sm.unet", requires=_REQUIRES, check=_framework_problem,
          description="U-Net (segmentation_models), backbone from SM_BACKBONES")
def sm_unet(input_shape: Sequence[int], num_classes: int = 1, backbone: str = "resnet34", weights=None,
            encoder: str | int = "trainable", channel_adapter: str | None = None, **options) -> keras.Model:
    return _build("unet", input_shape, num_classes, backbone, weights, encoder, channel_adapter, options)


@register("sm.fpn", requires=_REQUIRES, check=_framework_problem,
          description="FPN (segmentation_models), backbone from SM_BACKBONES")
def sm_fpn(input_shape: Sequence[int], num_classes: int = 1, backbone: str = "resnet34", weights=None,
           encoder: str | int = "trainable", channel_adapter: str | None = None, **options) -> keras.Model:
    return _build("fpn", input_shape, num_classes, backbone, weights, encoder, channel_adapter, options)


@register("sm.linknet", requires=_REQUIRES, check=_framework_problem,
          description="Linknet (segmentation_models), backbone from SM_BACKBONES")
def sm_linknet(input_shape: Sequence[int], num_classes: int = 1, backbone: str = "resnet34", weights=None,
               encoder: str | int = "trainable", channel_adapter: str | None = None, **options) -> keras.Model:
    return _build("linknet", input_shape, num_classes, backbone, weights, encoder, channel_adapter, options)


sm_unet.__doc__ = "U-Net from segmentation_models, sigmoid output.\n" + _ARGS_DOC.format(
    extra="decoder_filters, decoder_block_type, decoder_use_batchnorm")
sm_fpn.__doc__ = "FPN from segmentation_models, sigmoid output.\n" + _ARGS_DOC.format(
    extra="pyramid_block_filters, pyramid_use_batchnorm, pyramid_aggregation, pyramid_dropout")
sm_linknet.__doc__ = "Linknet from segmentation_models, sigmoid output.\n" + _ARGS_DOC.format(
    extra="decoder_filters, decoder_use_batchnorm, decoder_block_type")
