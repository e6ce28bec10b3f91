"""The six models of the backbone report's Table 6.1, built exactly as that report built them.

All are keras-unet-collection models, input 256x256x3,
``filter_num=[64, 128, 256, 512, 1024]``, one sigmoid output. The three
backbone models use an ImageNet VGG16 encoder, frozen, with transposed-conv
decoders (``unpool=False``); the three scratch models use max pooling and
bilinear upsampling. Parameter counts (trainable / non-trainable / total) are
those of the report, reproduced to the unit on Keras 3; the frozen encoder is
non-trainable whatever its weights, so ``weights=None`` (offline) gives the
same counts as ``weights="imagenet"`` (Kaggle/Colab).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras

from mslesion.models.registry import build_model

__all__ = ["ReportModel", "REPORT_MODELS", "report_models", "build_report_model", "describe_report_models"]


@dataclass(frozen=True)
class ReportModel:
    """One row of Table 6.1: how to build it and the counts the report lists."""

    display_name: str
    registry_name: str
    params: dict = field(default_factory=dict)
    pretrained: bool = False
    trainable: int = 0
    non_trainable: int = 0
    total: int = 0


_FILTERS = [64, 128, 256, 512, 1024]
_VGG = dict(filter_num=_FILTERS, backbone="VGG16", batch_norm=True, unpool=False, stack_num_up=2, encoder="frozen")
_SCRATCH = dict(filter_num=_FILTERS, batch_norm=True, unpool=True, pool=True)

#: Table 6.1 in report order; keys are stable run/model names.
REPORT_MODELS: dict[str, ReportModel] = {
    "unet_vgg16_imagenet": ReportModel(
        "UNet with VGG Backbone and ImageNet weights", "kuc.unet", _VGG, True, 16_450_049, 14_722_368, 31_172_417),
    "unet_plus_vgg16_imagenet": ReportModel(
        "UNet++ with VGG Backbone and ImageNet weights", "kuc.unet_plus", _VGG, True,
        13_316_609, 14_722_368, 28_038_977),
    "att_unet_vgg16_imagenet": ReportModel(
        "Attention UNet with VGG Backbone and ImageNet weights", "kuc.att_unet", _VGG, True,
        13_664_293, 14_720_448, 28_384_741),
    "unet_scratch": ReportModel("UNet from scratch", "kuc.unet", _SCRATCH, False, 34_520_193, 13_696, 34_533_889),
    "r2_unet_scratch": ReportModel(
        "R2 UNet from scratch", "kuc.r2_unet", _SCRATCH, False, 101_942_017, 37_248, 101_979_265),
    "att_unet_scratch": ReportModel(
        "Attention UNet from scratch", "kuc.att_unet", _SCRATCH, False, 31_908_517, 11_776, 31_920_293),
}


def build_report_model(key: str, input_shape=(256, 256, 3), weights=None) -> keras.Model:
    """Build one Table 6.1 model by key (see :data:`REPORT_MODELS`).

    Args:
        key: e.g. ``"unet_vgg16_imagenet"``.
        input_shape: ``(H, W, C)``; the report used ``(256, 256, 3)``.
        weights: for the VGG16 models: ``None`` (offline, same architecture
            and counts), ``"imagenet"`` (as in the report) or a local notop
            ``.h5``; ignored by the scratch models.

    Raises:
        KeyError: unknown key.
    """
    if key not in REPORT_MODELS:
        raise KeyError(f"unknown report model {key!r}; known: {list(REPORT_MODELS)}")
    spec = REPORT_MODELS[key]
    params = dict(spec.params)
    if spec.pretrained:
        params["weights"] = weights
    return build_model(spec.registry_name, input_shape=tuple(input_shape), **params)


def report_models(input_shape=(256, 256, 3), weights=None) -> dict[str, keras.Model]:
    """All six Table 6.1 models, keyed as :data:`REPORT_MODELS` (about 256M parameters in all).

    Args:
        input_shape: ``(H, W, C)``; ``(256, 256, 3)`` reproduces the report's counts.
        weights: for the three VGG16 models; ``"imagenet"`` on Kaggle/Colab,
            ``None`` offline (see :func:`build_report_model`).
    """
    return {key: build_report_model(key, input_shape, weights) for key in REPORT_MODELS}


def describe_report_models() -> list[str]:
    """Lines listing the six models: key, registry name, parameter count as the report gives it, its name there."""
    lines = ["the backbone report's Table 6.1 models (mslesion.study.table_6_1.build_report_model(key), "
             "weights='imagenet' on Kaggle/Colab):"]  # fmt: skip
    return lines + [f"  {key:<26} {m.registry_name:<14} {m.total:>12,} params  {m.display_name}"
                    for key, m in REPORT_MODELS.items()]  # fmt: skip
