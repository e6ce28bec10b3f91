"""Run configurations: :class:`RunConfig` (what every run shares) and the 2D :class:`TrainConfig`; a run folder's
name; a fold's train and validation patients."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from mslesion.configs import config_from_dict
from mslesion.train.datasets import split_patients_of

__all__ = ["RunConfig", "TrainConfig", "run_dir_for", "train_val_patients"]


@dataclass
class RunConfig:
    """What every run is configured by (2D and 3D training, the learning-rate search); saved as ``config.json``.

    The subclasses add their own options and may change these defaults; :meth:`from_dict` refuses unknown keys.
    """

    KIND: ClassVar[str] = "run"  # how its errors name it ("unknown training options ...")

    dataset: str
    model: str = "kuc.unet"
    model_params: dict = field(default_factory=dict)
    loss: str = "bce"
    loss_params: dict = field(default_factory=dict)
    batch_size: int = 8
    epochs: int = 50
    fold: int = 0
    seed: int = 0
    val_fraction: float = 0.1  # carve validation patients from train when the split has none
    mixed_precision: bool = False  # notebooks: runtime.auto_mixed_precision() (GPUs of compute capability >= 7, TPU)
    deterministic: bool = False  # repeat bit for bit on this machine (see mslesion.train.runtime.set_deterministic)
    runs_root: str = "runs"
    tag: str = "base"
    run_dir: str | None = None

    @classmethod
    def from_dict(cls, d: dict):
        return config_from_dict(cls, d, cls.KIND)


@dataclass
class TrainConfig(RunConfig):
    """Everything that decides a training run; saved as ``config.json``.

    Defaults follow the backbone report's section 5.2: Adam, learning rate 1e-3, binary
    cross-entropy, accuracy + Dice + IoU tracked on train and validation.
    """

    KIND: ClassVar[str] = "training"

    learning_rate: float = 1e-3
    augment: bool = False
    balance: bool = False
    reduce_lr_patience: int | None = None  # the 3DR2AUNet paper (2024): ReduceLROnPlateau(factor=0.5)
    reduce_lr_factor: float = 0.5
    early_stopping_patience: int | None = None
    max_minutes: float | None = None  # stop before the epoch that would pass this training time (epochs stays the cap)
    lesion_slices_only: bool = False  # train on slices with lesion only (the backbone report); validation keeps every slice
    cache_gb: float = 4.0  # slices smaller than this are read into memory once; larger stay memory-mapped
    strategy: str = "auto"
    jit_compile: bool = False  # XLA; see benchmarks/bench_train.py --jit for what it buys here
    # how batches are gathered (mslesion.train.runtime.input_pipeline): auto, graph (tf.gather from host memory) or
    # generator (Python, from memmaps); the batches are the same, only the speed differs
    input_pipeline: str = "auto"
    # where augmentation runs (mslesion.train.runtime.augment_place): auto, host (tf.data map) or device (train step)
    augment_on: str = "auto"
    tensorboard: bool = True  # TensorBoard logs in <run>/tensorboard (mslesion.train.tensorboard_logs)
    bn_horizon: float = 10.0  # see mslesion.train.batchnorm; 0 disables momentum capping
    bn_max_momentum: float = 0.9  # ceiling of trainable BN momenta (mslesion.train.batchnorm.MAX_MOMENTUM)
    recalibrate_bn: bool = True
    recalibration_batches: int | None = None  # None: one epoch of full batches, at most 200
    threshold: float = 0.5
    recipe: str | None = None  # the named options (mslesion.study.recipes.recipe) the others started from, if any



def run_dir_for(config) -> Path:
    """``<runs>/<dataset>/<model>__<loss>__<tag>/fold_<k>`` unless ``run_dir`` is set (train and tune configs)."""
    if config.run_dir:
        return Path(config.run_dir)
    return Path(config.runs_root) / Path(config.dataset).name / f"{config.model}__{config.loss}__{config.tag}" / (
        f"fold_{config.fold}"
    )


def train_val_patients(config: TrainConfig) -> tuple[list[str], list[str], bool]:
    train = split_patients_of(config.dataset, "train", config.fold)
    val = split_patients_of(config.dataset, "val", config.fold)
    if val:
        return train, val, False
    if config.val_fraction == 0:
        # tiny cohorts only: curves and best.keras then describe the training patients themselves
        warnings.warn(f"{config.dataset}: no validation patients (val_fraction=0); validating on the training patients",
                      stacklevel=3)  # fmt: skip
        return train, list(train), False
    # the backbone report validated on part of its training data; carve whole patients
    rng = np.random.default_rng(config.seed)
    n_val = max(1, int(round(len(train) * config.val_fraction))) if len(train) > 1 else 0
    if n_val == 0:
        raise ValueError(f"{config.dataset}: one training patient and no validation part; cannot validate "
                         "(val_fraction=0, mslesion train --val-fraction 0, validates on the training patient itself)")  # fmt: skip
    chosen = set(rng.choice(sorted(train), size=n_val, replace=False).tolist())
    return [p for p in train if p not in chosen], sorted(chosen), True
