"""Learning-rate search with keras-tuner (``mslesion tune``), the backbone report's section 5.2.2.

The search space is the learning rate only: a choice among fixed values
(the backbone report: 1e-1, 1e-2, 1e-3, 1e-4) or a log-uniform range. The objective is
validation Dice (pooled, thresholded; see :mod:`mslesion.train.keras_metrics`).
Results land in ``<run>/tuning.csv`` (trial, learning_rate, best_val_dice,
best_epoch, epochs) next to ``config.json``; keras-tuner's own state is in
``<run>/tuner/``, so an interrupted search resumes.

Several machines: keras-tuner's distributed mode needs no code change here.
Start the same ``mslesion tune`` command on every machine with
``KERASTUNER_ORACLE_IP`` / ``KERASTUNER_ORACLE_PORT`` pointing at the chief and
``KERASTUNER_TUNER_ID`` set to ``chief`` on one machine and ``tuner0``,
``tuner1``... on the workers (all sharing the run folder, which is then not locked).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

from mslesion import outputs
from mslesion.fileio import save_csv, save_json
from mslesion.paths import PREP_CONFIG, RUN_CONFIG
from mslesion.train.config import RunConfig, run_dir_for
from mslesion.train.datasets import load_slice_set, make_dataset
from mslesion.train.fitting import compile_for_training, float32_output
from mslesion.train.warmstart import init_weights, start_from

__all__ = ["TuneConfig", "tune", "TUNERS"]

TUNERS = ("grid", "random", "bayesian", "hyperband")
# what a search folder may hold: its files, keras-tuner's folder, temporaries a killed search left
TUNING_FILES = (r"config\.json", r"tuning\.csv", r"trial_histories\.json", r"tuner", r"tensorboard",
                r"\..+\.mslesion-[A-Za-z0-9_]{8}\.(?:tmp|old)(?:\..*)?")  # fmt: skip


@dataclass
class TuneConfig(RunConfig):
    """A learning-rate search; saved as ``config.json`` in the run folder."""

    KIND: ClassVar[str] = "tuning"

    tuner: str = field(default="grid", metadata={"choices": TUNERS})
    learning_rates: list[float] = field(default_factory=lambda: [1e-1, 1e-2, 1e-3, 1e-4], metadata={
        "help": "fixed values"})
    log_uniform: tuple[float, float] | None = field(default=None, metadata={
        "metavar": ("LOW", "HIGH"), "help": "a log-uniform range instead of the fixed values, e.g. 1e-5 1e-1"})
    max_trials: int = 4
    epochs: int = 10
    # the session's strategy (mslesion.train.runtime.pick_strategy): each trial trains under it
    strategy: str = field(default="auto", metadata={"choices": ("auto", "tpu", "mirrored", "default")})
    tag: str = "lr_search"
    overwrite: bool = field(default=False, metadata={
        "help": "start the search afresh (keras-tuner state and trial curves)"})
    tensorboard: bool = field(default=True, metadata={"help": (
        "write no TensorBoard logs (default: <run>/tensorboard/<trial>/: each trial's epoch scalars and "
        "keras-tuner's HParams view)")})

    def peak_learning_rates(self) -> list[float]:
        """The trial learning rates a schedule peaks at: the fixed values, or the range's ends."""
        return list(self.log_uniform) if self.log_uniform else [float(v) for v in self.learning_rates]


def tune(config: TuneConfig | dict, verbose: int = 0, progress: bool = False) -> Path:
    """Run the search; returns the run folder holding ``tuning.csv``.

    ``progress``: a line per trial and per epoch with the trial's and the search's ETA.

    The dataset, model and loss are checked before anything is written. The folder
    is claimed (a folder holding files mslesion did not write is refused) and
    locked for the whole search (a second search on it fails at once).

    Raises:
        OutputError: the folder holds files mslesion did not write, or overlaps the dataset.
        OutputLockedError: another process is searching in the same folder.
    """
    from mslesion.train.config import TrainConfig, train_val_patients
    from mslesion.train.runfolder import check_run_inputs

    if isinstance(config, dict):
        config = TuneConfig.from_dict(config)
    if config.tuner not in TUNERS:
        raise ValueError(f"unknown tuner {config.tuner!r}; known: {TUNERS}")
    if config.tuner == "grid" and config.log_uniform:
        raise ValueError("a grid search needs fixed learning_rates, not a log-uniform range")
    check_run_inputs(config, PREP_CONFIG)
    split = TrainConfig(dataset=config.dataset, fold=config.fold, seed=config.seed, val_fraction=config.val_fraction)
    train_ids, val_ids, carved = train_val_patients(split)
    # the search folder is a run folder too: refused when it holds files of others, one writer at a time
    run = outputs.claim_dir(run_dir_for(config), "tuning", known=TUNING_FILES, inputs=[config.dataset])
    if os.environ.get("KERASTUNER_TUNER_ID"):
        # keras-tuner's distributed mode: the chief and its workers share the folder on purpose
        return _search(config, run, train_ids, val_ids, carved, verbose, progress)
    with outputs.locked(run):
        outputs.remove_stale_temps(run)
        return _search(config, run, train_ids, val_ids, carved, verbose, progress)


def _search(config: TuneConfig, run: Path, train_ids: list[str], val_ids: list[str], carved: bool,
            verbose: int, progress: bool = False) -> Path:  # fmt: skip
    import keras_tuner as kt

    from mslesion.models import build_model
    from mslesion.train import runtime

    runtime.set_seed(config.seed)
    runtime.set_deterministic(config.deterministic)
    policy = runtime.set_mixed_precision(config.mixed_precision)
    strategy = runtime.pick_strategy(config.strategy)
    batch = config.batch_size * strategy.num_replicas_in_sync
    train_set, val_set = load_slice_set(config.dataset, train_ids), load_slice_set(config.dataset, val_ids)
    static = runtime.needs_static_shapes(strategy)
    train_ds = make_dataset(train_set, batch, seed=config.seed, drop_remainder=static,
                            min_last_batch=strategy.num_replicas_in_sync)  # fmt: skip
    steps_per_epoch = int(train_ds.cardinality())
    init = {}  # the warm start's checkpoint and weights, read (and checked) by the first trial

    def build(hp):
        if config.log_uniform:
            lo, hi = config.log_uniform
            lr = hp.Float("learning_rate", lo, hi, sampling="log")
        else:
            lr = hp.Choice("learning_rate", [float(v) for v in config.learning_rates])
        model = build_model(config.model, input_shape=train_set.slice_shape, **config.model_params)
        if policy != "float32":  # the loss in float32, as in training
            model = float32_output(model)
        # the trial's rate is the peak of the config's schedule, on the config's optimizer
        compile_for_training(model, config, learning_rate=lr, steps_per_epoch=steps_per_epoch)
        if config.init_from:
            if not init:
                init["checkpoint"], init["weights"] = init_weights(config, model, run)
            start_from(run, model, init["checkpoint"], init["weights"])
        return model

    from mslesion.progress import JobProgress

    n_trials = len(config.learning_rates) if config.tuner == "grid" else config.max_trials
    job = JobProgress(n_trials, config.epochs) if progress else None
    histories_path = run / "trial_histories.json"
    histories: dict = json.loads(histories_path.read_text()) if histories_path.is_file() and not config.overwrite else {}

    def recording(cls):
        # keras-tuner keeps only each trial's best value; keep the per-epoch curves too
        class Recording(cls):
            def run_trial(self, trial, *args, **kwargs):
                if job is not None:
                    lr = trial.hyperparameters.get("learning_rate")
                    job.start_run(f"trial {trial.trial_id}", config.epochs, f"learning rate {lr:g}")
                    kwargs["callbacks"] = [*kwargs.get("callbacks", []), job.keras_callback()]
                result = super().run_trial(trial, *args, **kwargs)
                runs = result if isinstance(result, list) else [result]
                curves = [h.history.get("val_dice", []) for h in runs if hasattr(h, "history")]
                histories[trial.trial_id] = [float(v) for v in max(curves, key=max, default=[])]
                save_json(histories_path, histories)
                return result

        return Recording

    objective = kt.Objective("val_dice", direction="max")
    common = {"objective": objective, "directory": str(run), "project_name": "tuner", "seed": config.seed,
              "overwrite": config.overwrite, "distribution_strategy": strategy}  # fmt: skip
    if config.tuner == "hyperband":
        tuner = recording(kt.Hyperband)(build, max_epochs=config.epochs, **common)
    else:
        cls = {"grid": kt.GridSearch, "random": kt.RandomSearch, "bayesian": kt.BayesianOptimization}[config.tuner]
        tuner = recording(cls)(build, max_trials=config.max_trials, **common)
    save_json(run / RUN_CONFIG, {**asdict(config), "train_patients": train_ids, "val_patients": val_ids,
                                    "val_carved_from_train": carved, "dtype_policy": policy,
                                    "replicas": int(strategy.num_replicas_in_sync), "global_batch_size": batch,
                                    "static_batch_shapes": static, "steps_per_epoch": steps_per_epoch})  # fmt: skip
    callbacks = []
    if config.tensorboard:
        import keras

        from mslesion.train import tensorboard_logs

        if config.overwrite and not tensorboard_logs.remove_if_only_events(run / tensorboard_logs.FOLDER) and (
                run / tensorboard_logs.FOLDER).exists():  # fmt: skip
            print(f"{run / tensorboard_logs.FOLDER}: holds files TensorBoard did not write; left in place")
        # keras-tuner gives each trial its own log folder and adds its HParams callback to this one
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run / tensorboard_logs.FOLDER), write_graph=False))
    tuner.search(
        train_ds,
        validation_data=make_dataset(val_set, batch, shuffle=False, min_last_batch=strategy.num_replicas_in_sync),
        epochs=config.epochs,
        verbose=0 if job is not None else verbose,
        shuffle=False,  # the dataset shuffles itself, seeded per epoch
        callbacks=callbacks,
    )
    _write_table(run / "tuning.csv", tuner, histories)
    return run


def _write_table(path: Path, tuner, histories: dict) -> None:
    rows = []
    for trial in tuner.oracle.trials.values():
        curve = histories.get(trial.trial_id, [])
        best = max(curve) if curve else (trial.score if trial.score is not None else float("nan"))
        rows.append({
            "trial": trial.trial_id,
            "learning_rate": trial.hyperparameters.get("learning_rate"),
            "best_val_dice": best,
            "best_epoch": curve.index(best) + 1 if curve else "",
            "epochs": len(curve) if curve else "",
            "status": trial.status,
        })  # fmt: skip
    rows.sort(key=lambda r: -r["best_val_dice"] if r["best_val_dice"] == r["best_val_dice"] else float("inf"))
    save_csv(path, rows, columns=list(rows[0]) if rows else ["trial"], float_format=None)
