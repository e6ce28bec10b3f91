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
        final_eval.json    val metrics of final.keras in inference and training mode
        backup/            BackupAndRestore state while a run is unfinished
"""

from __future__ import annotations

import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from .datasets import Augmentation, load_slice_set, make_dataset, split_patients_of
from .fileio import save_json, save_text
from .metrics import Confusion, compute_dice

__all__ = ["TrainConfig", "train", "run_dir_for", "read_history", "epoch_study"]


@dataclass
class TrainConfig:
    """Everything that decides a training run; saved as ``config.json``.

    Defaults follow seed 000 section 5.2: Adam, learning rate 1e-3, binary
    cross-entropy, accuracy + Dice + IoU tracked on train and validation.
    """

    dataset: str
    model: str = "kuc.unet"
    model_params: dict = field(default_factory=dict)
    loss: str = "bce"
    loss_params: dict = field(default_factory=dict)
    learning_rate: float = 1e-3
    batch_size: int = 8
    epochs: int = 50
    fold: int = 0
    seed: int = 0
    augment: bool = False
    balance: bool = False
    reduce_lr_patience: int | None = None  # seed 002: ReduceLROnPlateau(factor=0.5)
    reduce_lr_factor: float = 0.5
    early_stopping_patience: int | None = None
    val_fraction: float = 0.1  # carve validation patients from train when the split has none
    cache_gb: float = 4.0  # slices smaller than this are read into memory once; larger stay memory-mapped
    strategy: str = "auto"
    mixed_precision: bool = False
    bn_horizon: float = 10.0  # see mslesion.batchnorm; 0 disables momentum capping
    recalibrate_bn: bool = True
    threshold: float = 0.5
    runs_root: str = "runs"
    tag: str = "base"
    run_dir: str | None = None

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return config_from_dict(cls, d, "training")


def config_from_dict(cls, d: dict, what: str):
    """Build the config dataclass ``cls`` from ``d``, refusing unknown keys (typos)."""
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} options {sorted(unknown)}")
    return cls(**d)


def run_dir_for(config) -> Path:
    """``<runs>/<dataset>/<model>__<loss>__<tag>/fold_<k>`` unless ``run_dir`` is set (train and tune configs)."""
    if config.run_dir:
        return Path(config.run_dir)
    return Path(config.runs_root) / Path(config.dataset).name / f"{config.model}__{config.loss}__{config.tag}" / (
        f"fold_{config.fold}"
    )


def _parts(config: TrainConfig) -> tuple[list[str], list[str], bool]:
    train = split_patients_of(config.dataset, "train", config.fold)
    val = split_patients_of(config.dataset, "val", config.fold)
    if val:
        return train, val, False
    if config.val_fraction == 0:
        # tiny cohorts only: curves and best.keras then describe the training patients themselves
        warnings.warn(f"{config.dataset}: no validation patients (val_fraction=0); validating on the training patients",
                      stacklevel=3)  # fmt: skip
        return train, list(train), False
    # seed 000 validated on part of its training data; carve whole patients
    rng = np.random.default_rng(config.seed)
    n_val = max(1, int(round(len(train) * config.val_fraction))) if len(train) > 1 else 0
    if n_val == 0:
        raise ValueError(f"{config.dataset}: one training patient and no validation part; cannot validate "
                         "(val_fraction=0 validates on the training patient itself)")  # fmt: skip
    chosen = set(rng.choice(sorted(train), size=n_val, replace=False).tolist())
    return [p for p in train if p not in chosen], sorted(chosen), True


class EpochTimer:
    """Adds ``seconds``, ``img_per_s`` (training images) and ``learning_rate`` to each epoch's logs."""

    def __new__(cls, n_images: int):
        import keras

        class _Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                seconds = time.perf_counter() - self.start
                if logs is not None:
                    logs["seconds"] = seconds
                    logs["img_per_s"] = n_images / seconds if seconds > 0 else float("nan")
                    logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

        return _Timer()


def read_history(run_dir: str | Path):
    """``history.csv`` as a DataFrame, one row per epoch (duplicates from a resume dropped)."""
    import pandas as pd

    history = pd.read_csv(Path(run_dir) / "history.csv")
    return history.drop_duplicates("epoch", keep="last").sort_values("epoch").reset_index(drop=True)


def epoch_study(run_dir: str | Path, every: int = 25, metric: str = "val_dice") -> list[dict]:
    """Seed 000 section 5.2.1 from one long run: ``metric`` at epochs every, 2*every, ... (1-based)."""
    history = read_history(run_dir)
    rows = []
    for epoch in range(every, len(history) + 1, every):
        row = history.iloc[epoch - 1]
        rows.append({"epoch": epoch, metric: float(row[metric]), "best_so_far": float(history[metric][:epoch].max())})
    return rows


def train(config: TrainConfig | dict, verbose: int = 2) -> Path:
    """Train one model on one fold; returns the run folder (see module doc).

    Re-running the same config on an unfinished run folder resumes it from the
    last completed epoch (Keras BackupAndRestore).
    """
    import keras

    from . import batchnorm, keras_metrics, losses, runtime
    from .models import build_model, count_params

    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    run = run_dir_for(config)
    run.mkdir(parents=True, exist_ok=True)
    runtime.set_seed(config.seed)
    policy = runtime.set_mixed_precision(config.mixed_precision)
    strategy = runtime.pick_strategy(config.strategy)

    train_ids, val_ids, carved = _parts(config)
    in_memory = _dataset_bytes(config.dataset, train_ids + val_ids) <= config.cache_gb * 2**30
    train_set = load_slice_set(config.dataset, train_ids, mmap=not in_memory)
    val_set = load_slice_set(config.dataset, val_ids, mmap=not in_memory)
    global_batch = config.batch_size * strategy.num_replicas_in_sync
    augment = Augmentation() if config.augment else None
    train_ds = make_dataset(train_set, global_batch, seed=config.seed, balance=config.balance, augment=augment)
    val_ds = make_dataset(val_set, global_batch, shuffle=False)

    with strategy.scope():
        model = build_model(config.model, input_shape=train_set.slice_shape, **config.model_params)
        if policy != "float32":
            # keep the sigmoid output (and so the loss) in float32 under mixed precision
            out = keras.layers.Activation("linear", dtype="float32", name="output_float32")(model.output)
            model = keras.Model(model.inputs, out, name=model.name)
        model.compile(
            optimizer=keras.optimizers.Adam(config.learning_rate),
            loss=losses.get_loss(config.loss, **config.loss_params),
            metrics=keras_metrics.default_metrics(config.threshold),
        )
    steps = int(np.ceil(len(train_set) / global_batch)) * config.epochs
    momenta = batchnorm.adapt_momentum(model, steps, config.bn_horizon) if config.bn_horizon else {}

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
        "global_batch_size": global_batch,
        "dtype_policy": policy,
        "bn_momentum_capped": momenta,
        "params": count_params(model),
    }
    save_json(run / "config.json", resolved)
    save_json(run / "environment.json", runtime.environment(strategy))
    # the run must stay usable for prediction without its dataset folder
    shutil.copyfile(Path(config.dataset) / "prep_config.json", run / "prep_config.json")
    lines: list[str] = []
    model.summary(print_fn=lambda line, **_: lines.append(line))
    save_text(run / "summary.txt", "\n".join(lines) + "\n")

    callbacks = [
        EpochTimer(len(train_set)),
        keras.callbacks.BackupAndRestore(str(run / "backup")),
        keras.callbacks.CSVLogger(str(run / "history.csv"), append=True),
        _best_checkpoint(run),
    ]
    if config.reduce_lr_patience:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=config.reduce_lr_factor, patience=config.reduce_lr_patience))  # fmt: skip
    if config.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_dice", mode="max", patience=config.early_stopping_patience))  # fmt: skip
    model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, callbacks=callbacks, verbose=verbose,
              shuffle=False)  # the dataset shuffles itself, seeded per epoch

    final_eval = {
        "inference_before_recalibration": model.evaluate(val_ds, verbose=0, return_dict=True),
        # training-mode calls move BN statistics, so measure before re-estimating them
        "training_mode_val_dice": _training_mode_dice(model, val_set, global_batch, config.threshold),
    }
    if config.recalibrate_bn:
        used = batchnorm.recalibrate(model, make_dataset(train_set, global_batch, seed=config.seed + 1))
        final_eval["recalibration_batches"] = used
    final_eval["inference"] = model.evaluate(val_ds, verbose=0, return_dict=True)
    model.save(run / "final.keras")
    save_json(run / "final_eval.json", final_eval)
    return run


def _dataset_bytes(dataset: str, patients: list[str]) -> int:
    root = Path(dataset)
    return sum((root / p / name).stat().st_size for p in patients for name in ("image.npy", "mask.npy")
               if (root / p / name).is_file())  # fmt: skip


def _best_checkpoint(run: Path):
    """ModelCheckpoint on val_dice that remembers the best value across a resume."""
    import keras

    ckpt = keras.callbacks.ModelCheckpoint(str(run / "best.keras"), monitor="val_dice", mode="max",
                                           save_best_only=True)  # fmt: skip
    if (run / "history.csv").is_file() and (run / "best.keras").is_file():
        done = read_history(run)
        if "val_dice" in done and len(done):
            ckpt.best = float(done["val_dice"].max())
    return ckpt


def _training_mode_dice(model, val_set, batch_size: int, threshold: float) -> float:
    """Pooled val Dice with BN in training mode (batch statistics): the reference for BN health."""
    tp = fp = fn = 0
    for x, y in make_dataset(val_set, batch_size, shuffle=False):
        pred = np.asarray(model(x, training=True)) > threshold
        truth = y.numpy() > 0.5
        tp += int((pred & truth).sum())
        fp += int((pred & ~truth).sum())
        fn += int((~pred & truth).sum())
    return compute_dice(Confusion(tp, fp, fn, 0))
