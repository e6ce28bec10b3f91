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

__all__ = ["RunConfig", "TrainConfig", "run_dir_for", "train_val_patients", "OPTIMIZERS", "LR_SCHEDULES"]

OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine", "cyclical")


@dataclass
class RunConfig:
    """What every run is configured by (2D and 3D training, the learning-rate search); saved as ``config.json``.

    The subclasses add their own options and may change these defaults; :meth:`from_dict` refuses unknown keys.
    """

    KIND: ClassVar[str] = "run"  # how its errors name it ("unknown training options ...")

    # field metadata: the flags of mslesion train/tune/train3d (mslesion.cli.options.add_config_flags)
    dataset: str = field(metadata={"positional": True, "help": "prepared dataset folder (mslesion prep; prep3d for train3d)"})
    model: str = field(default="kuc.unet", metadata={"help": "registry name, see `mslesion models`"})
    model_params: dict = field(default_factory=dict, metadata={
        "pairs": "KEY=JSON", "json": True, "flag": "--model-param", "help": "e.g. backbone=vgg16, filter_num=[16,32,64]"})
    loss: str = field(default="bce", metadata={"help": "bce, dice, bce_dice, tversky, focal_tversky"})
    loss_params: dict = field(default_factory=dict, metadata={
        "pairs": "KEY=JSON", "json": True, "flag": "--loss-param", "help": "e.g. alpha=0.7"})
    batch_size: int = 8
    epochs: int = 50
    fold: int = field(default=0, metadata={"help": "fold of splits.json"})
    seed: int = field(default=0, metadata={"help": "fixes initialisation, shuffles and validation carving"})
    val_fraction: float = field(default=0.1, metadata={"help": (
        "patients carved from train for validation when the split has none; "
        "0: validate on the training patients (one or two patients)")})
    # notebooks: runtime.auto_mixed_precision() (GPUs of compute capability >= 7, TPU); the CLI's --mixed-precision
    mixed_precision: bool = False
    deterministic: bool = field(default=False, metadata={
        "help": "repeat bit for bit on this machine (op determinism; augmentation runs serially)"})
    runs_root: str = field(default="runs", metadata={"help": "runs go to <runs-root>/<dataset>/<model>__<loss>__<tag>"})
    tag: str = "base"
    run_dir: str | None = field(default=None, metadata={"help": "the run folder itself, instead of the name above"})
    # the optimizer and its schedule (mslesion.train.optimizers)
    optimizer: str = field(default="adam", metadata={"choices": OPTIMIZERS, "help": (
        "adamw and sgd take --weight-decay (Keras' decoupled decay); sgd takes --momentum, --nesterov")})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum"})
    nesterov: bool = field(default=False, metadata={"help": "Nesterov momentum (SGD)"})
    weight_decay: float = field(default=0.0, metadata={"help": (
        "decoupled weight decay of adamw and sgd (Rondinella et al. 2023: SGD, 1e-4)")})
    lr_schedule: str = field(default="constant", metadata={"choices": LR_SCHEDULES, "help": (
        "per-step schedule peaking at the learning rate: cosine decay to --min-learning-rate over --epochs, "
        "or a triangular cycle (Smith 2017) between the two every --cycle-epochs")})
    warmup_epochs: int = field(default=0, metadata={"help": "linear warm-up from 0 to the learning rate first"})
    min_learning_rate: float = field(default=0.0, metadata={"help": "the cosine's floor; the cycle's bottom"})
    cycle_epochs: float = field(default=4.0, metadata={"help": "cyclical: epochs of one full cycle, bottom to bottom"})
    init_from: str | None = field(default=None, metadata={"metavar": "RUN", "help": (
        "warm start: the weights of this run's model.keras (else best.keras), or of a .keras file, "
        "before the first epoch (same model and weight shapes)")})

    def __post_init__(self) -> None:
        _check_optimizer(self)

    def peak_learning_rates(self) -> list[float]:
        """The learning rates a schedule of this run may peak at (its ``learning_rate``, where it has one)."""
        rate = getattr(self, "learning_rate", None)
        return [] if rate is None else [rate]

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
    augment: bool = field(default=False, metadata={"help": "flips, rotations, intensity and elastic augmentation"})
    balance: bool = field(default=False, metadata={"help": "class-balanced slice sampling"})
    # the 3DR2AUNet paper (2024): ReduceLROnPlateau(factor=0.5)
    reduce_lr_patience: int | None = field(default=None, metadata={"help": "epochs without progress before lowering"})
    reduce_lr_factor: float = 0.5
    early_stopping_patience: int | None = None
    max_minutes: float | None = field(default=None, metadata={
        "help": "training-time budget: stop before the epoch that would pass it (--epochs stays the cap)"})
    lesion_slices_only: bool = field(default=False, metadata={
        "help": "train on slices with lesion only (the backbone report); validation keeps every slice"})
    cache_gb: float = field(default=4.0, metadata={
        "help": "slices smaller than this are read into memory once; larger stay memory-mapped"})
    strategy: str = field(default="auto", metadata={"choices": ("auto", "tpu", "mirrored", "default")})
    jit_compile: bool = field(default=False, metadata={"help": "XLA-compile the training step"})
    # the batches are the same whichever way they are gathered (mslesion.train.runtime.input_pipeline); only speed differs
    input_pipeline: str = field(default="auto", metadata={"choices": ("auto", "graph", "generator"), "help": (
        "auto: batches gathered in the graph from memory on a GPU/TPU, in Python on the CPU")})
    augment_on: str = field(default="auto", metadata={"choices": ("auto", "host", "device"), "help": (
        "where --augment runs; auto: in the train step on a GPU (without XLA), else a tf.data map on the host")})
    tensorboard: bool = field(default=True, metadata={
        "help": "write no TensorBoard logs (default: <run>/tensorboard: epoch scalars, validation images)"})
    bn_horizon: float = field(default=10.0, metadata={
        "help": "cap batch-norm momenta to this many steps of memory (mslesion.train.batchnorm); 0: no cap"})
    bn_max_momentum: float = 0.9  # ceiling of trainable BN momenta (mslesion.train.batchnorm.MAX_MOMENTUM)
    recalibrate_bn: bool = field(default=True, metadata={
        "help": "keep the batch-norm statistics as trained (default: re-estimate them after training)"})
    recalibration_batches: int | None = field(default=None, metadata={
        "help": "batches for re-estimating them (default one epoch of full batches, at most 200)"})
    threshold: float = field(default=0.5, metadata={"help": "probability cut for the validation Dice"})
    recipe: str | None = None  # the named options (mslesion.study.recipes.recipe) the others started from, if any


def _check_optimizer(config: RunConfig) -> None:
    """Refuse optimizer and schedule options that contradict each other (one line each, naming the options)."""
    from mslesion.errors import ConfigError

    def refuse(problem: str) -> None:
        raise ConfigError(f"{config.KIND} options: {problem}")

    if config.optimizer not in OPTIMIZERS:
        refuse(f"unknown optimizer {config.optimizer!r}; known: {', '.join(OPTIMIZERS)}")
    if config.lr_schedule not in LR_SCHEDULES:
        refuse(f"unknown lr_schedule {config.lr_schedule!r}; known: {', '.join(LR_SCHEDULES)}")
    if not config.weight_decay >= 0:
        refuse(f"weight_decay must be 0 or more, not {config.weight_decay}")
    # Keras 3 decays Adam's weights decoupled, which is AdamW: one name for one optimizer
    if config.optimizer == "adam" and config.weight_decay:
        refuse("adam with weight_decay is adamw (Keras decouples the decay): pass optimizer adamw")
    if config.optimizer == "adamw" and not config.weight_decay:
        refuse("adamw without weight_decay is adam: give weight_decay (e.g. 1e-4) or use adam")
    if not 0 <= config.momentum < 1:
        refuse(f"momentum must be in [0, 1), not {config.momentum}")
    if config.nesterov and config.optimizer != "sgd":
        refuse(f"nesterov is SGD's; the optimizer is {config.optimizer}")
    if config.warmup_epochs < 0 or config.min_learning_rate < 0 or not config.cycle_epochs > 0:
        refuse("warmup_epochs and min_learning_rate must be 0 or more, cycle_epochs more than 0")
    scheduled = config.lr_schedule != "constant" or config.warmup_epochs
    if scheduled and getattr(config, "reduce_lr_patience", None):
        # a schedule object is not settable: ReduceLROnPlateau would fail at its first plateau
        refuse(f"lr_schedule {config.lr_schedule!r} (warmup_epochs {config.warmup_epochs}) sets the learning rate "
               "every step, so ReduceLROnPlateau cannot lower it: drop reduce_lr_patience (--reduce-lr-patience 0)")
    if config.warmup_epochs and config.epochs and config.warmup_epochs >= config.epochs:
        refuse(f"warmup_epochs {config.warmup_epochs} leaves none of the {config.epochs} epochs after the warm-up")
    if config.lr_schedule != "constant":
        above = [r for r in config.peak_learning_rates() if r < config.min_learning_rate]
        if above:
            refuse(f"min_learning_rate {config.min_learning_rate:g} is above the learning rate {above[0]:g}")


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
