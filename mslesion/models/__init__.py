"""Segmentation models: a registry over segmentation_models (``sm.*``) and keras-unet-collection (``kuc.*``).

>>> from mslesion.models import build_model, count_params
>>> model = build_model("kuc.unet", input_shape=(256, 256, 1))          # from scratch, 1 channel
>>> model = build_model("sm.unet", input_shape=(256, 256, 3), backbone="vgg16", weights="imagenet")
>>> model = build_model("kuc.unet", input_shape=(256, 256, 1), backbone="VGG16",
...                     weights="/data/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", encoder=2)

Every model is uncompiled and ends in a sigmoid: ``(B, H, W, C) -> (B, H, W, num_classes)``.
The zoo libraries are imported only when one of their models is built.
"""

from mslesion.models import fc_densenet, kuc, pyramid_att_unet, r2_att_unet_3d, sm  # noqa: F401  (registers the adapters and native models)
from mslesion.models.errors import BackboneUnavailableError, EncoderModeError, ModelError, WeightsUnavailableError
from mslesion.models.registry import MODELS, ModelSpec, build_model, count_params, list_models, register
from mslesion.models.saving import load_model

__all__ = [
    "MODELS",
    "ModelSpec",
    "register",
    "build_model",
    "list_models",
    "count_params",
    "load_model",
    "ModelError",
    "WeightsUnavailableError",
    "BackboneUnavailableError",
    "EncoderModeError",
]


def __getattr__(name: str):
    # Table 6.1's specs moved to mslesion.study.table_6_1 (issue 12); the old names still resolve, with a warning.
    from mslesion.compat import moved_attribute

    return moved_attribute(__name__, name)
