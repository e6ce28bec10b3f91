"""The LGG encoder comparison as one call: a plain U-Net from scratch against U-Nets with ImageNet encoders.

The "Brain MRI Segmentation" project (the LGG encoder comparison; LGG FLAIR data of Buda et al. 2019) trained,
with Dice loss (1 - Dice) and augmentation (rotation, shifts, zoom, flips), four models and compared their
Dice and IoU (its sections 4-6):

- ``unet``: a generic U-Net without a pretrained encoder;
- ``vgg16_retrained``: a U-Net with an ImageNet VGG16 encoder, every layer retrained;
- ``resnet50_retrained``: the same with ResNet50 (its best);
- ``resnet50_frozen2``: ResNet50 with its first two convolution blocks frozen (its worst).

:func:`compare_encoders` trains them on one dataset and split; the report's ``encoder_comparison`` table
(:func:`mslesion.report.eval_tables.encoder_comparison_table`) reads the runs. ImageNet weights are
downloaded by Keras on first use (Kaggle/Colab); offline, pass ``weights=None`` (random encoders, every
layer trained), or the runs fail with the clear error of :mod:`mslesion.models.weights`.
``quick=True`` (CPU tests, laptops) narrows the decoders, uses ResNet18 for ResNet50 (the same residual
blocks, so "the first two blocks" means the same thing) and trains without ImageNet weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EncoderVariant", "ENCODER_VARIANTS", "encoder_variant_config", "compare_encoders"]


@dataclass(frozen=True)
class EncoderVariant:
    """One model of the comparison: a registry model and its parameters (``weights`` filled in at run time)."""

    model: str
    params: dict = field(default_factory=dict)
    pretrained: bool = True
    description: str = ""


ENCODER_VARIANTS: dict[str, EncoderVariant] = {
    "unet": EncoderVariant("kuc.unet", {"filter_num": [64, 128, 256, 512, 1024]}, False,
                           "U-Net, no pretrained encoder"),
    "vgg16_retrained": EncoderVariant("sm.unet", {"backbone": "vgg16", "encoder": "trainable"}, True,
                                      "U-Net, VGG16 encoder (ImageNet), every layer retrained"),
    "resnet50_retrained": EncoderVariant("sm.unet", {"backbone": "resnet50", "encoder": "trainable"}, True,
                                         "U-Net, ResNet50 encoder (ImageNet), every layer retrained"),
    "resnet50_frozen2": EncoderVariant("sm.unet", {"backbone": "resnet50", "encoder": 2}, True,
                                       "U-Net, ResNet50 encoder (ImageNet), first two blocks frozen"),
}  # fmt: skip

#: quick mode: narrower decoders and the small ResNet for ResNet50
_QUICK = {"kuc.unet": {"filter_num": [16, 32, 64, 128]}, "sm.unet": {"decoder_filters": [64, 32, 16, 16, 8]}}


def encoder_variant_config(name: str, dataset: str | Path, runs_root: str | Path, epochs: int,
                           weights: str | None = "imagenet", quick: bool = False, **overrides) -> dict:  # fmt: skip
    """The :class:`mslesion.train.config.TrainConfig` dict of one variant, tagged with its name.

    Dice loss and augmentation as the source trained, unless ``overrides`` say otherwise.

    Raises:
        KeyError: an unknown variant name.
    """
    if name not in ENCODER_VARIANTS:
        raise KeyError(f"unknown encoder variant {name!r}; known: {', '.join(ENCODER_VARIANTS)}")
    variant = ENCODER_VARIANTS[name]
    params = dict(variant.params)
    if quick:
        params.update(_QUICK[variant.model])
        if params.get("backbone") == "resnet50":
            params["backbone"] = "resnet18"
        weights = None
    if variant.pretrained:
        params["weights"] = weights
    return {"dataset": str(dataset), "model": variant.model, "model_params": params, "epochs": epochs,
            "loss": "dice", "augment": True, "runs_root": str(runs_root), "tag": name, **overrides}  # fmt: skip


def compare_encoders(dataset: str | Path, runs_root: str | Path, variants: list[str] | None = None,
                     epochs: int = 120, weights: str | None = "imagenet", quick: bool = False, verbose: int = 0,
                     overwrite: bool = False, progress: bool = False, time_budget_minutes: float | None = None,
                     **overrides) -> list[Path]:  # fmt: skip
    """Train each variant of :data:`ENCODER_VARIANTS` (default all, in order) on the same dataset and split.

    The source trained its scratch U-Net for 120 epochs; ``time_budget_minutes`` shares a budget over the
    runs instead (``max_minutes`` each), as :func:`mslesion.study.experiments.train_report_models` does.
    Finished runs are reused unless ``overwrite``. ``overrides``: any other training option (``seed``,
    ``fold``, ``batch_size``, ``learning_rate``...), the same for every variant. Returns the run folders.
    """
    from mslesion.study.experiments import job_progress
    from mslesion.train.training import train

    names = list(variants or ENCODER_VARIANTS)
    for name in names:  # every name checked before the first run starts
        encoder_variant_config(name, dataset, runs_root, epochs)
    job = job_progress(len(names), epochs, progress, time_budget_minutes, overrides)
    return [train(encoder_variant_config(name, dataset, runs_root, epochs, weights, quick, **overrides),
                  verbose=verbose, overwrite=overwrite, progress=job) for name in names]  # fmt: skip
