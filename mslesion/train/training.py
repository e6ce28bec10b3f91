"""One training config -> one run folder (``mslesion train``).

Run folder::

    <runs>/<dataset>/<model>__<loss>__<tag>/fold_<k>/
        config.json        the resolved TrainConfig, plus what the runner decided
        prep_config.json   how the dataset's slices were prepared (prediction repeats it)
        environment.json   versions, devices, strategy, dtype policy
        history.csv        per epoch: loss, accuracy, dice, iou (train and val), lr, seconds, img/s
        summary.txt        model summary with parameter counts
        best.keras         the epoch with the best val_dice (BN statistics as trained)
        final.keras        last epoch, BN statistics re-estimated on training batches
        model.keras        what evaluate/predict use: the better of the best epoch and the last, both
                           recalibrated, by inference-mode val Dice (mslesion.train.checkpoints)
        final_eval.json    both candidates' val metrics in inference and training mode, the choice, BN warnings
        state.json         the options the run was started with and how far it got (training/fitted/done)
        backup/            while fitting: the last two end-of-epoch backups (weights with optimizer
                           state, epoch, best val_dice, callback state), epoch_<n>.weights.h5 + .json
        fitted.weights.h5  between the end of the fit and final.keras: the fitted weights

A run folder is claimed (:func:`mslesion.outputs.claim_dir`) and locked for the
whole run, so two processes never write the same one. Every file in it is
written under a temporary name and renamed, so a kill at any moment loses at
most the epoch in flight: re-running the same options resumes from the newest
backup that loads (an older one when the newest is damaged), and once the fit
is done only the phases after it are redone. A finished run is left alone;
other options for an existing run are an error (``overwrite`` starts afresh).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from mslesion.errors import DataError
from mslesion.paths import PREP_CONFIG
from mslesion.train import tensorboard_logs
from mslesion.train.augmentation import augment_in_train_step
from mslesion.train.budget import EpochTimer, TimeBudget
from mslesion.train.config import TrainConfig, train_val_patients
from mslesion.train.datasets import Augmentation, load_slice_set, make_dataset, split_patients_of
from mslesion.train.finish import announce_choice, finish_run
from mslesion.train.fitting import compile_for_training, float32_output, plateau_callbacks
from mslesion.train.resume import crash, fit_resumably, load_fitted, mark_done, mark_fitted, skip_epochs
from mslesion.train.runfolder import begin_run, check_run_inputs, mark_started, open_run, write_run_records
from mslesion.train.warmstart import init_weights, start_from

__all__ = ["train", "lesion_slices"]


def train(config: TrainConfig | dict, verbose: int = 2, *, overwrite: bool = False, progress=None) -> Path:
    """Train one model on one fold; returns the run folder (see module doc).

    Re-running the same options resumes an unfinished run (at most the epoch in
    flight is redone; after the fit, only the phases after it) and leaves a
    finished one alone. The dataset, model and loss names are checked before
    anything is written.

    Args:
        overwrite: start the run afresh: what an earlier run wrote in the folder is
            removed first (never files mslesion did not write: those are refused).
        progress: a :class:`mslesion.progress.JobProgress` of the job this run is part of:
            one line per epoch with the scores and the run's and job's ETA (Keras' own
            output is then off).

    Raises:
        OutputError: the run folder holds files mslesion did not write, or overlaps the dataset.
        OutputLockedError: another process is writing the same run folder.
        RunConfigError: the folder holds a run started with other options (without ``overwrite``).
    """

    from mslesion.models import build_model, count_params
    from mslesion.train import batchnorm, runtime

    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    check_run_inputs(config, PREP_CONFIG)
    train_ids, val_ids, carved = train_val_patients(config)
    with open_run(config, "run", overwrite=overwrite) as (run, state):
        if not begin_run(config, run, state, progress):
            return run
        policy = runtime.set_mixed_precision(config.mixed_precision)
        strategy = runtime.pick_strategy(config.strategy)

        in_memory = _dataset_bytes(config.dataset, train_ids + val_ids) <= config.cache_gb * 2**30
        train_set = load_slice_set(config.dataset, train_ids, mmap=not in_memory)
        if config.lesion_slices_only:
            train_set = lesion_slices(train_set, config.dataset)
        val_set = load_slice_set(config.dataset, val_ids, mmap=not in_memory)
        global_batch = config.batch_size * strategy.num_replicas_in_sync
        augment = Augmentation() if config.augment else None
        # a TPU compiles one program per batch shape: every training batch full
        static = runtime.needs_static_shapes(strategy)
        replicas = int(strategy.num_replicas_in_sync)
        devices = runtime.describe_devices()
        source = runtime.input_pipeline(config.input_pipeline, devices, in_memory)
        augment_on = runtime.augment_place(config.augment_on, devices, config.jit_compile) if augment else None
        train_ds = make_dataset(train_set, global_batch, seed=config.seed, balance=config.balance,
                                augment=augment if augment_on == "host" else None,
                                drop_remainder=static, min_last_batch=replicas, source=source)  # fmt: skip
        val_ds = make_dataset(val_set, global_batch, shuffle=False, min_last_batch=replicas)

        steps_per_epoch = len(train_set) // global_batch + (0 if static or len(train_set) % global_batch < replicas else 1)
        with strategy.scope():
            model = build_model(config.model, input_shape=train_set.slice_shape, **config.model_params)
            if policy != "float32":
                model = float32_output(model)
            compile_for_training(model, config, jit_compile=config.jit_compile, steps_per_epoch=steps_per_epoch)
            if augment_on == "device":
                augment_in_train_step(model, augment, config.seed)
        # checked before the run is recorded, so a mismatch leaves no run behind
        init = init_weights(config, model, run) if config.init_from else None
        steps = steps_per_epoch * config.epochs
        momenta = (batchnorm.adapt_momentum(model, steps, config.bn_horizon, config.bn_max_momentum)
                   if config.bn_horizon else {})  # fmt: skip

        resolved = {
            **asdict(config),
            "run_dir": str(run),
            "train_patients": train_ids,
            "val_patients": val_ids,
            "val_carved_from_train": carved,
            "val_is_train": config.val_fraction == 0 and not split_patients_of(config.dataset, "val", config.fold),
            "n_train_slices": len(train_set),
            "n_val_slices": len(val_set),
            "slices_in_memory": in_memory,
            "input_shape": list(train_set.slice_shape),
            "batch_size_per_replica": config.batch_size,
            "replicas": int(strategy.num_replicas_in_sync),
            "global_batch_size": global_batch,
            "static_batch_shapes": static,
            "input_pipeline_used": source,
            "augment_on_used": augment_on,
            # a last validation batch too small to give every replica a row is left out
            "val_slices_left_out": len(val_set) % global_batch if len(val_set) % global_batch < replicas else 0,
            "dtype_policy": policy,
            "bn_momentum_capped": momenta,
            "params": count_params(model),
            "init_from_checkpoint": str(init[0]) if init else None,
            "steps_per_epoch": steps_per_epoch,
        }
        state = mark_started(run, config, "run", state)
        write_run_records(run, config.dataset, PREP_CONFIG, resolved, runtime.environment(strategy), model)

        if state["phase"] == "fitted":
            load_fitted(run, model)
        else:
            callbacks = [EpochTimer(len(train_set))]
            if config.tensorboard:
                callbacks += tensorboard_logs.callbacks(run, val_set)
            if progress is not None:
                callbacks.append(progress.keras_callback())
                verbose = 0
            callbacks += plateau_callbacks(config)
            budget = None
            if config.max_minutes:
                budget = TimeBudget(config.max_minutes, run, steps_per_epoch,
                                    config.epochs, config.bn_horizon, config.bn_max_momentum)  # fmt: skip
                callbacks.append(budget)
            done = fit_resumably(run, model, train_ds, val_ds, config.epochs, callbacks, verbose,
                                  skip_data=lambda n: skip_epochs(train_ds, n),
                                  initialise=(lambda: start_from(run, model, *init, strategy)) if init else None,
                                  shuffle=False)  # the dataset shuffles itself, seeded per epoch
            if budget is not None:
                state = {**state, "bn_momentum_recapped": budget.recapped}
            state = mark_fitted(run, model, state, done)

        # from here on everything follows from the fitted weights, so a killed run redoes only this part
        final_eval = finish_run(run, model, config, train_set, val_set, val_ds, global_batch, augment,
                             resolved["val_is_train"], {"bn_momentum_recapped": state.get("bn_momentum_recapped")})
        crash("before_done")
        mark_done(run, state)
    announce_choice(final_eval)
    return run


def lesion_slices(slices, dataset: str):
    """The slices of ``slices`` that hold lesion (manifest), as a new SliceSet on the same arrays."""
    from mslesion.train.datasets import SliceSet

    keep = np.flatnonzero(slices.has_lesion)
    if not len(keep):
        raise DataError(Path(dataset), "lesion_slices_only: the training patients have no slice with lesion")
    return SliceSet(slices.images, slices.masks, slices.index[keep], slices.has_lesion[keep], slices.patients)


def _dataset_bytes(dataset: str, patients: list[str]) -> int:
    root = Path(dataset)
    return sum((root / p / name).stat().st_size for p in patients for name in ("image.npy", "mask.npy")
               if (root / p / name).is_file())  # fmt: skip
