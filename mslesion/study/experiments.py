"""The study's experiments as calls: backbone comparison, the six Table 6.1 models, the LR search, the demo.

Notebooks 02-04 and ``mslesion demo`` call these, so the notebook route and
the one-command route produce the same run folders. ``quick=True`` shrinks the
decoders (and, without ImageNet weights, trains the VGG16 encoders instead of
freezing random ones) so everything runs on a laptop CPU in minutes; the full
settings are the backbone report's.
"""

from __future__ import annotations

from pathlib import Path

from mslesion.paths import FINAL_EVAL, PREP_CONFIG, SPLITS
from mslesion.study.recipes import TRAINING_CONFIGS
from mslesion.study.table_6_1 import REPORT_MODELS

__all__ = ["QUICK_FILTERS", "report_model_config", "train_report_models", "compare_backbones", "learning_rate_search",
           "evaluate_runs", "BACKBONES", "compare_training_configs", "train_native_models", "QUICK_NATIVE", "job_progress"]  # fmt: skip


#: Decoder widths in quick mode (pretrained-encoder models, scratch models).
QUICK_FILTERS = {"pretrained": [32, 64, 128, 256, 512], "scratch": [16, 32, 64, 128]}


#: Encoders compared in notebook 02 (the backbone report's s. 5.1 compared VGG16/ResNet/MobileNet-class encoders; the LGG encoder comparison on LGG).
BACKBONES = ("vgg16", "resnet34", "mobilenetv2", "efficientnetb0")


def report_model_config(key: str, dataset: str | Path, runs_root: str | Path, epochs: int, quick: bool = False,
                        weights: str | None = "imagenet", **overrides) -> dict:  # fmt: skip
    """A :class:`mslesion.train.training.TrainConfig` dict for one Table 6.1 model, tagged with its key."""
    spec = REPORT_MODELS[key]
    params = dict(spec.params)
    if spec.pretrained:
        params["weights"] = weights
        if weights is None and quick:
            params["encoder"] = "trainable"  # a frozen random encoder learns nothing
    if quick:
        params["filter_num"] = QUICK_FILTERS["pretrained" if spec.pretrained else "scratch"]
    return {"dataset": str(dataset), "model": spec.registry_name, "model_params": params, "epochs": epochs,
            "runs_root": str(runs_root), "tag": key, **overrides}  # fmt: skip


def job_progress(n_runs: int, epochs: int, progress: bool, time_budget_minutes: float | None, overrides: dict):
    """The job's :class:`~mslesion.progress.JobProgress` (or None) and, with a budget, each run's ``max_minutes``."""
    from mslesion.env.workspace import platform_name
    from mslesion.progress import JobProgress, budget_per_run

    per_run = budget_per_run(time_budget_minutes, n_runs)
    if per_run is not None:
        overrides["max_minutes"] = min(per_run, overrides.get("max_minutes") or per_run)
        print(f"time budget {time_budget_minutes:g} min for {n_runs} runs: at most "
              f"{overrides['max_minutes']:.1f} min of training each (recorded as max_minutes)")  # fmt: skip
    return JobProgress(n_runs, epochs, platform_name()) if progress else None


def train_report_models(dataset: str | Path, runs_root: str | Path, epochs: int = 50, keys: list[str] | None = None,
                        quick: bool = False, weights: str | None = "imagenet", verbose: int = 0,
                        overwrite: bool = False, progress: bool = False, time_budget_minutes: float | None = None,
                        **overrides) -> list[Path]:  # fmt: skip
    """Train the models of Table 6.1 (all six by default); returns their run folders.

    ``overrides`` go to every :class:`~mslesion.train.training.TrainConfig` (loss,
    learning_rate, batch_size, augment...). The backbone report: bce, Adam 1e-3, 50 epochs.
    Finished runs are left as they are unless ``overwrite`` (see :func:`mslesion.train.training.train`).
    ``progress``: a line per epoch with the run's and the job's ETA (notebooks);
    ``time_budget_minutes``: the whole job's training time, split evenly over the runs.
    """
    from mslesion.train.training import train

    keys = keys or list(REPORT_MODELS)
    job = job_progress(len(keys), epochs, progress, time_budget_minutes, overrides)
    return [train(report_model_config(k, dataset, runs_root, epochs, quick, weights, **overrides), verbose=verbose,
                  overwrite=overwrite, progress=job) for k in keys]  # fmt: skip


#: Demo-size widths of the native models (``quick``); without ``quick`` each model keeps its paper's widths.
QUICK_NATIVE = {
    "native.att_unet_pyramid": {"filters": [16, 32, 64, 128]},
    "native.fc_densenet": {"growth_rate": 8, "layers_per_block": 2, "blocks": 3, "initial_filters": 16, "dropout": 0.0},
    "native.r2_att_unet_3d": {"filters": [8, 16, 32]},
}


def train_native_models(dataset: str | Path, runs_root: str | Path, epochs: int = 50, epochs_3d: int | None = None,
                        quick: bool = False, include_3d: bool = True, verbose: int = 0, overwrite: bool = False,
                        progress: bool = False, time_budget_minutes: float | None = None,
                        derived_root: str | Path | None = None, **overrides) -> list[Path]:  # fmt: skip
    """The related works' own architectures on ``dataset``'s patients and split; returns their run folders.

    The pyramid attention U-Net of Røvang (2021, University of Oslo thesis) on ``dataset``
    itself; the FC-DenseNet with squeeze-and-attention and ConvLSTM of Rondinella et al. ("Boosting
    multiple sclerosis lesion segmentation through attention mechanism", 2023) on brain-cropped
    slice triplets, and the 3D R2 attention U-Net of the F.sh / 3DR2AUNet paper (IJISRT 2024) on patches of whole
    normalised volumes, both prepared in ``derived_root`` (default: beside ``dataset``) as
    ``<dataset>_25d`` and ``<dataset>_volumes`` from the source recorded in its ``prep_config.json``,
    with its seed and fractions. The first run is the pyramid one (the report's attention figure).
    ``overrides`` go to the 2D runs (loss, batch_size, ...); ``progress``/``time_budget_minutes`` as in
    :func:`train_report_models`, for the 3D run too (its ``max_minutes`` from the budget). The derived datasets
    are prepared (and their split checked) before any training starts.
    """
    from mslesion.data.prep import PrepConfig, prepare_dataset
    from mslesion.data.volumes3d import prepare_volumes
    from mslesion.fileio import load_json
    from mslesion.train.training import train
    from mslesion.train.training3d import train_3d

    dataset = Path(dataset)
    record = load_json(dataset / PREP_CONFIG)
    split = {k: record[k] for k in ("split", "test_fraction", "val_fraction", "folds", "seed")}

    def widths(name: str) -> dict:
        return dict(QUICK_NATIVE[name]) if quick else {}

    # the derived datasets first: a folder that cannot be written, or gives another split, stops the job
    # before any training
    derived = Path(derived_root) if derived_root is not None else dataset.parent
    triplets = derived / (dataset.name + "_25d")
    prep = PrepConfig(**{k: record[k] for k in ("layout", "modalities", "selection", "size", "normalisation")},
                      context=3, crop="brain", **split)  # fmt: skip
    prepare_dataset(record["source"], triplets, prep, progress=False, overwrite=overwrite)
    _same_split(dataset, triplets)
    volumes = derived / (dataset.name + "_volumes")
    if include_3d:
        prepare_volumes(record["source"], volumes, modalities=record["modalities"], layout=record["layout"],
                        **split, overwrite=overwrite)  # fmt: skip
        _same_split(dataset, volumes)

    job = job_progress(2 + include_3d, epochs, progress, time_budget_minutes, overrides)
    base = {"epochs": epochs, "runs_root": str(runs_root), **overrides}
    quiet = 0 if job is not None else verbose  # the progress lines replace Keras' own
    runs = [train({"dataset": str(dataset), "model": "native.att_unet_pyramid", "tag": "pyramid",
                   "model_params": widths("native.att_unet_pyramid"), **base, "learning_rate": 1e-2},
                  verbose=quiet, overwrite=overwrite, progress=job)]  # fmt: skip
    runs.append(train({"dataset": str(triplets), "model": "native.fc_densenet", "tag": "sa_convlstm",
                       "model_params": widths("native.fc_densenet"), **base}, verbose=quiet, overwrite=overwrite,
                      progress=job))  # fmt: skip
    if include_3d:
        patch = {"patch": (16, 32, 32), "stride": (8, 16, 16)} if quick else {}
        shared = {k: overrides[k] for k in ("seed", "deterministic", "max_minutes") if k in overrides}
        runs.append(train_3d({"dataset": str(volumes), "model_params": widths("native.r2_att_unet_3d"), **patch,
                              "epochs": epochs_3d or epochs, "learning_rate": 3e-3, "batch_size": 4 if quick else 2,
                              "runs_root": str(runs_root), **shared},
                             verbose=quiet, overwrite=overwrite, progress=job))  # fmt: skip
    return runs


def _same_split(dataset: Path, other: Path) -> None:
    from mslesion.data.splits import load_splits

    if load_splits(dataset / SPLITS)["folds"] != load_splits(other / SPLITS)["folds"]:
        raise ValueError(f"{other}: its patient split differs from {dataset}'s (a patient failed in one of them?); "
                         "the native models must be compared on the same patients")


def compare_backbones(dataset: str | Path, runs_root: str | Path, backbones: tuple[str, ...] = BACKBONES,
                      model: str = "sm.unet", epochs: int = 20, weights: str | None = "imagenet",
                      encoder: str = "trainable", verbose: int = 0, overwrite: bool = False, progress: bool = False,
                      time_budget_minutes: float | None = None, **overrides) -> list[Path]:  # fmt: skip
    """Train one U-Net per encoder on the same split; the report's backbone table reads the runs.

    ``progress`` and ``time_budget_minutes``: as in :func:`train_report_models`.
    """
    from mslesion.train.training import train

    job = job_progress(len(backbones), epochs, progress, time_budget_minutes, overrides)
    runs = []
    for backbone in backbones:
        params = {"backbone": backbone, "weights": weights, "encoder": encoder}
        runs.append(train({"dataset": str(dataset), "model": model, "model_params": params, "epochs": epochs,
                           "runs_root": str(runs_root), "tag": f"{backbone}", **overrides}, verbose=verbose,
                          overwrite=overwrite, progress=job))  # fmt: skip
    return runs


def learning_rate_search(dataset: str | Path, runs_root: str | Path, model: str = "kuc.unet",
                         model_params: dict | None = None, learning_rates=(1e-1, 1e-2, 1e-3, 1e-4), epochs: int = 10,
                         progress: bool = False, **overrides) -> Path:  # fmt: skip
    """The backbone report's s. 5.2.2: a keras-tuner grid over learning rates; returns the folder holding tuning.csv.

    ``progress``: a line per trial and epoch with ETAs (notebooks).
    """
    from mslesion.train.tuning import tune

    return tune({"dataset": str(dataset), "model": model, "model_params": model_params or {}, "tuner": "grid",
                 "learning_rates": list(learning_rates), "max_trials": len(learning_rates), "epochs": epochs,
                 "runs_root": str(runs_root), "overwrite": True, **overrides}, progress=progress)  # fmt: skip


def compare_training_configs(dataset: str | Path, runs_root: str | Path, names: list[str] | None = None,
                             minutes: float = 15.0, max_epochs: int = 200, model: str = "sm.unet",
                             model_params: dict | None = None, fold: int = 0, seed: int = 0, verbose: int = 0,
                             overwrite: bool = False, **overrides):  # fmt: skip
    """Train each named configuration on fold ``fold`` of ``dataset`` within the same training-time budget,
    score each on the fold's test patients (whole volumes, per patient) and return one row per configuration.

    Every run stops before the epoch that would pass ``minutes`` of training (``max_epochs`` caps it);
    the final BN recalibration and checkpoint choice come on top. Finished runs are reused unless
    ``overwrite``. Columns: config, epochs, train_minutes, val_dice (model.keras, recalibrated), test
    patients n, per-patient Dice mean / median / sd, collapsed (Dice < 0.1), lesion F1 mean.
    """
    import pandas as pd

    from mslesion.evaluate.config import EvalConfig
    from mslesion.evaluate.evaluation import evaluate
    from mslesion.evaluate.summary import COLLAPSE_DICE
    from mslesion.fileio import load_json
    from mslesion.train.history import read_history
    from mslesion.train.training import train

    params = model_params if model_params is not None else {"backbone": "mobilenetv2", "weights": None}
    rows = []
    for name in names or list(TRAINING_CONFIGS):
        if name not in TRAINING_CONFIGS:
            raise KeyError(f"unknown training configuration {name!r}; known: {', '.join(TRAINING_CONFIGS)}")
        cfg = {"dataset": str(dataset), "model": model, "model_params": params, "epochs": max_epochs,
               "max_minutes": minutes, "fold": fold, "seed": seed, "runs_root": str(runs_root), "tag": name,
               **TRAINING_CONFIGS[name], **overrides}  # fmt: skip
        run = train(cfg, verbose=verbose, overwrite=overwrite)
        out = evaluate(run, EvalConfig(overwrite=True), verbose=False)
        per_patient = pd.read_csv(out / "per_patient.csv", dtype={"patient": str})
        history = read_history(run)
        final_eval = load_json(run / FINAL_EVAL)
        dice = per_patient.dice.astype(float)
        rows.append({"config": name, "epochs": len(history), "train_minutes": float(history.seconds.sum()) / 60,
                     "val_dice": final_eval["candidates"][final_eval["chosen"]]["inference"]["dice"],
                     "chosen": final_eval["chosen"], "bn_warning": bool(final_eval["warnings"]),
                     "test_patients": len(per_patient), "dice_mean": float(dice.mean()),
                     "dice_median": float(dice.median()), "dice_sd": float(dice.std(ddof=1)) if len(dice) > 1 else 0.0,
                     "collapsed": int((dice < COLLAPSE_DICE).sum()),
                     "lesion_f1_mean": float(per_patient.lesion_f1.astype(float).mean()),
                     "run": str(run)})  # fmt: skip
    return pd.DataFrame(rows)


def evaluate_runs(runs: list[Path], verbose: bool = False, **settings) -> list[Path]:
    """Whole-volume, per-patient evaluation of each run on its test patients.

    Re-running replaces the runs' own earlier evaluations (``overwrite=True``
    unless ``settings`` say otherwise), as re-running a notebook should.
    ``verbose``: a line per run and per patient (notebooks).
    """
    from mslesion.evaluate.config import EvalConfig
    from mslesion.evaluate.evaluation import evaluate

    settings.setdefault("overwrite", True)
    out = []
    for i, run in enumerate(runs, 1):
        if verbose:
            print(f"[evaluation {i}/{len(runs)}] {run}", flush=True)
        out.append(evaluate(run, EvalConfig(**settings), verbose=verbose))
    return out
