"""One 3D training config -> one run folder (the 3DR2AUNet paper's (2024) 3D path).

The dataset is a folder written by :func:`mslesion.train.patches.prepare_volumes`.
The run folder has the 2D runner's layout (:mod:`mslesion.train.training`)::

    <runs>/<dataset>/<model>__<loss>__<tag>/fold_<k>/
        config.json        the resolved Train3DConfig, patients, patch counts, parameter counts
        prep3d_config.json how the volumes were prepared
        environment.json   versions, backend, devices
        history.csv        per epoch: loss, accuracy, dice, iou (train and val), learning_rate,
                           seconds, img_per_s (training patches per second)
        summary.txt        model summary with parameter counts
        best.keras         the epoch with the best val_dice; final.keras: the last epoch
        state.json, backup/, fitted.weights.h5: as in the 2D runner (resumable after a kill)
        eval_<part>/       per_patient.csv, lesions.csv, slices.csv, failures.csv, summary.json
                           (:func:`mslesion.evaluate.evaluation3d.evaluate_3d`), masks/ when asked

The 3DR2AUNet paper (2024) (sections B-E): 64^3 patches at stride 32, flips/rotations, BCE + Dice
0.5/0.5, Adam 1e-4 with ReduceLROnPlateau(factor 0.5) on the validation loss, 70
epochs. Validation runs on every grid patch of the validation patients, without
augmentation; evaluation predicts whole volumes by Gaussian-blended sliding window.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from mslesion.data.volumes3d import open_volume
from mslesion.paths import FINAL, PREP3D_CONFIG
from mslesion.train.budget import EpochTimer, TimeBudget
from mslesion.train.config import RunConfig, train_val_patients
from mslesion.train.datasets import split_patients_of
from mslesion.train.fitting import compile_for_training, plateau_callbacks
from mslesion.train.patches import PatchSampler
from mslesion.train.resume import crash, fit_resumably, load_fitted, mark_done, mark_fitted, save_model
from mslesion.train.runfolder import begin_run, check_run_inputs, mark_started, open_run, write_run_records
from mslesion.train.warmstart import init_weights, start_from

__all__ = ["Train3DConfig", "train_3d"]


@dataclass
class Train3DConfig(RunConfig):
    """Everything that decides a 3D training run; saved as ``config.json`` (defaults: the 3DR2AUNet paper (2024))."""

    KIND: ClassVar[str] = "3D training"

    model: str = "native.r2_att_unet_3d"
    loss: str = "bce_dice"
    learning_rate: float = 1e-4
    reduce_lr_factor: float = 0.5
    reduce_lr_patience: int | None = 5
    batch_size: int = 2
    epochs: int = 70
    patch: tuple[int, int, int] = field(default=(64, 64, 64), metadata={"metavar": ("D", "H", "W")})
    stride: tuple[int, int, int] = field(default=(32, 32, 32), metadata={
        "metavar": ("D", "H", "W"), "help": "step of the patch grid"})
    lesion_fraction: float | None = field(default=0.5, metadata={"help": "share of each batch drawn from patches with lesion"})
    augment: bool = field(default=True, metadata={"help": "no flips or 90-degree turns of the patches"})
    rotate_deg: float = field(default=0.0, metadata={"help": "small in-plane rotation on top of flips and turns"})
    # the 3DR2AUNet paper (2024) mentions elastic deformation; off by default
    elastic_alpha_vox: float = field(default=0.0, metadata={"help": "elastic deformation strength in voxels"})
    patches_per_epoch: int | None = field(default=None, metadata={
        "help": "default: the number of grid patches of the training patients"})
    threshold: float = 0.5
    bn_horizon: float = 10.0  # see mslesion.train.batchnorm; 0 disables momentum capping
    bn_max_momentum: float = 0.9  # ceiling of trainable BN momenta (mslesion.train.batchnorm.MAX_MOMENTUM)
    workers: int = field(default=1, metadata={
        "help": "threads preparing batches (more helps with --rotate-deg / --elastic-alpha-vox on a GPU)"})
    max_minutes: float | None = field(default=None, metadata={
        "help": "training-time budget: stop before the epoch that would pass it (--epochs stays the cap)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.patch = tuple(int(p) for p in self.patch)
        self.stride = tuple(int(s) for s in self.stride)


def _environment() -> dict:
    import keras

    from mslesion.train import runtime

    if keras.backend.backend() == "tensorflow":
        info = runtime.environment()
    else:  # runtime.environment() imports TensorFlow
        info = {"python": sys.version.split()[0], "keras": keras.__version__, "numpy": np.__version__,
                "dtype_policy": keras.mixed_precision.global_policy().name}  # fmt: skip
        module = sys.modules.get(keras.backend.backend())
        info[keras.backend.backend()] = getattr(module, "__version__", "unknown")
    return {**info, "backend": keras.backend.backend()}


def _epoch_setter(sampler: PatchSampler):
    """A callback drawing the sampler's patches from the true epoch number (so a resumed run repeats them)."""
    import keras

    class _SetEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            sampler.set_epoch(epoch)

    return _SetEpoch()


def train_3d(config: Train3DConfig | dict, verbose: int = 2, *, overwrite: bool = False, progress=None) -> Path:
    """Train one 3D model on one fold of prepared volumes; returns the run folder (see module doc).

    Run folders behave as the 2D runner's (:func:`mslesion.train.training.train`):
    claimed and locked, every file written atomically, re-running the same
    options resumes an unfinished run (at most the epoch in flight is redone)
    and leaves a finished one alone; other options are an error.

    Args:
        overwrite: start the run afresh: what an earlier run wrote in the folder is removed first.
        progress: a :class:`mslesion.progress.JobProgress`, as for :func:`mslesion.train.training.train`.

    Raises:
        OutputError: the run folder holds files mslesion did not write, or overlaps the dataset.
        OutputLockedError: another process is writing the same run folder.
        RunConfigError: the folder holds a run started with other options (without ``overwrite``).
    """
    import keras

    from mslesion.models import (
        build_model,
        count_params,
        r2_att_unet_3d,  # noqa: F401  (registers native.r2_att_unet_3d)
    )
    from mslesion.train import batchnorm

    config = Train3DConfig.from_dict(config) if isinstance(config, dict) else config
    check_run_inputs(config, PREP3D_CONFIG)
    train_ids, val_ids, carved = train_val_patients(config)
    with open_run(config, "run3d", overwrite=overwrite) as (run, state):
        if not begin_run(config, run, state, progress):
            return run
        keras.mixed_precision.set_global_policy("mixed_float16" if config.mixed_precision else "float32")
        sampler_args = {"batch_size": config.batch_size, "patch": config.patch, "stride": config.stride}
        train_set = PatchSampler([open_volume(config.dataset, p) for p in train_ids], **sampler_args,
                                 lesion_fraction=config.lesion_fraction, augment=config.augment,
                                 patches_per_epoch=config.patches_per_epoch, seed=config.seed,
                                 rotate_deg=config.rotate_deg, elastic_alpha_vox=config.elastic_alpha_vox,
                                 workers=config.workers)  # fmt: skip
        val_set = PatchSampler([open_volume(config.dataset, p) for p in val_ids], **sampler_args,
                               lesion_fraction=None, augment=False, shuffle=False)  # fmt: skip
        channels = train_set.volumes[0].volume.shape[-1]
        model = build_model(config.model, input_shape=(*config.patch, channels), **config.model_params)
        compile_for_training(model, config, steps_per_epoch=len(train_set))
        # checked before the run is recorded, so a mismatch leaves no run behind
        init = init_weights(config, model, run) if config.init_from else None
        steps = len(train_set) * config.epochs
        momenta = (batchnorm.adapt_momentum(model, steps, config.bn_horizon, config.bn_max_momentum)
                   if config.bn_horizon else {})  # fmt: skip
        resolved = {
            **asdict(config), "run_dir": str(run), "kind": "3d", "train_patients": train_ids, "val_patients": val_ids,
            "val_carved_from_train": carved,
            "val_is_train": config.val_fraction == 0 and not split_patients_of(config.dataset, "val", config.fold),
            "n_train_patches_per_epoch": train_set.n_patches, "n_train_grid_patches": len(train_set.index),
            "n_train_lesion_grid_patches": int(train_set.has_lesion.sum()), "n_val_patches": val_set.n_patches,
            "input_shape": [*config.patch, channels], "dtype_policy": keras.mixed_precision.global_policy().name,
            "bn_momentum_capped": momenta, "params": count_params(model),
            "init_from_checkpoint": str(init[0]) if init else None, "steps_per_epoch": len(train_set),
        }  # fmt: skip
        state = mark_started(run, config, "run3d", state)
        write_run_records(run, config.dataset, PREP3D_CONFIG, resolved, _environment(), model)

        if state["phase"] == "fitted":
            load_fitted(run, model)
        else:
            # the sampler draws each epoch's patches from the true epoch number, so a resume needs no skipping
            callbacks = [_epoch_setter(train_set), EpochTimer(train_set.n_patches)]
            callbacks += plateau_callbacks(config)
            if progress is not None:
                callbacks.append(progress.keras_callback())
                verbose = 0
            if config.max_minutes:
                callbacks.append(TimeBudget(config.max_minutes, run))
            done = fit_resumably(run, model, train_set, val_set, config.epochs, callbacks, verbose,
                                 initialise=(lambda: start_from(run, model, *init)) if init else None)
            state = mark_fitted(run, model, state, done)
        save_model(model, run / FINAL, "final_model")
        crash("before_done")
        mark_done(run, state)
    return run
