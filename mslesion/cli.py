"""``mslesion`` command line: one subcommand per stage, no logic of its own."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mslesion import __version__
from mslesion.paths import RUN_CONFIG

__all__ = ["main"]


def _pairs(items: list[str] | None, flag: str) -> dict[str, str] | None:
    if not items:
        return None
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"{flag} expects MODALITY=PATTERN, got {item!r}")
        key, value = item.split("=", 1)
        out[key] = value
    return out


def add_synth(subparsers) -> None:
    p = subparsers.add_parser("synth", help="write a synthetic MS cohort as NIfTI (Muslim et al. layout)")
    p.add_argument("out_dir", type=Path, nargs="?", default=Path("data/raw/synthetic"))
    p.add_argument("--patients", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shape", type=int, nargs=3, default=(256, 256, 24), metavar=("X", "Y", "Z"))
    p.add_argument("--spacing", type=float, nargs=3, default=(0.9, 0.9, 5.0), metavar=("SX", "SY", "SZ"),
                   help="voxel size in mm")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace a synthetic cohort written there before")

    def run(a):
        from mslesion.data.synthetic import generate_cohort

        folders = generate_cohort(a.out_dir, a.patients, a.seed, tuple(a.shape), tuple(a.spacing), overwrite=a.overwrite)
        print(f"wrote {len(folders)} patients to {a.out_dir}")

    p.set_defaults(run=run)


def add_prep(subparsers) -> None:
    from mslesion.data.cohort import LAYOUTS
    from mslesion.data.geometry import FITS
    from mslesion.data.intensity import NORMALISATIONS
    from mslesion.data.prep import PrepConfig
    from mslesion.data.slicing import SELECTIONS
    from mslesion.data.splits import SPLIT_MODES

    d = PrepConfig()
    p = subparsers.add_parser("prep", help="extract normalised 2D slices (.npy) from volumes, split by patient")
    p.add_argument("source", type=Path, help="dataset folder (Muslim, Ljubljana, LGG layout, or use patterns)")
    p.add_argument("out_dir", type=Path, help="dataset folder to write")
    p.add_argument("--layout", choices=LAYOUTS, default=d.layout)
    p.add_argument("--image-pattern", action="append", metavar="MOD=PATTERN",
                   help="e.g. flair='{patient}/{patient}_FLAIR.nii.gz' (repeat per modality)")  # fmt: skip
    p.add_argument("--mask-pattern", action="append", metavar="MOD=PATTERN")
    p.add_argument("--modalities", nargs="+", default=list(d.modalities), help="channels, e.g. flair t1 t2")
    p.add_argument("--mask-modality", default=None, help="whose lesion mask to use (default: first modality)")
    p.add_argument("--allow-empty-masks", action="store_true", help="accept patients without lesions")
    p.add_argument("--selection", choices=SELECTIONS, default=d.selection)
    p.add_argument("--entropy-threshold", type=float, default=d.entropy_threshold_bits, help="bits/pixel")
    p.add_argument("--min-foreground", type=float, default=d.min_foreground_fraction,
                   help="for --selection brain: least fraction of the slice inside the head")  # fmt: skip
    p.add_argument("--normalisation", choices=NORMALISATIONS, default=d.normalisation)
    p.add_argument("--percentiles", type=float, nargs=2, default=d.percentiles)
    p.add_argument("--background", choices=("zero", "keep"), default=d.background,
                   help="outside the foreground after normalisation: 0 (default, nnU-Net) or the normalised values")
    p.add_argument("--size", type=int, nargs=2, default=d.size, metavar=("H", "W"))
    p.add_argument("--fit", choices=FITS, default=d.fit)
    p.add_argument("--context", type=int, default=d.context, help="2.5D: odd number of adjacent slices as channels")
    p.add_argument("--context-padding", choices=("edge", "zero"), default=d.context_padding)
    p.add_argument("--crop", choices=("none", "brain"), default=d.crop,
                   help="brain: crop slices to the head's bounding box (Rondinella et al. 2023), undone at evaluation")  # fmt: skip
    p.add_argument("--crop-margin", type=int, default=d.crop_margin, help="pixels kept around the box")
    p.add_argument("--split", choices=SPLIT_MODES, default=d.split)
    p.add_argument("--test-fraction", type=float, default=d.test_fraction)
    p.add_argument("--val-fraction", type=float, default=d.val_fraction)
    p.add_argument("--folds", type=int, default=d.folds)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--jobs", type=int, default=1, help="patients prepared in parallel")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset mslesion prep wrote at OUT before")

    def run(a):
        from mslesion.data.prep import prepare_dataset

        config = PrepConfig(
            layout=a.layout, image_patterns=_pairs(a.image_pattern, "--image-pattern"),
            mask_patterns=_pairs(a.mask_pattern, "--mask-pattern"), modalities=tuple(a.modalities),
            mask_modality=a.mask_modality, allow_empty_masks=a.allow_empty_masks, selection=a.selection,
            entropy_threshold_bits=a.entropy_threshold, min_foreground_fraction=a.min_foreground,
            normalisation=a.normalisation, percentiles=tuple(a.percentiles), background=a.background,
            size=tuple(a.size), fit=a.fit,
            context=a.context, context_padding=a.context_padding, crop=a.crop, crop_margin=a.crop_margin,
            split=a.split, test_fraction=a.test_fraction,
            val_fraction=a.val_fraction, folds=a.folds, seed=a.seed,
        )  # fmt: skip
        summary = prepare_dataset(a.source, a.out_dir, config, jobs=a.jobs, progress=not a.no_progress,
                                  overwrite=a.overwrite)  # fmt: skip
        print(summary)
        return 1 if summary.patients == 0 else 0

    p.set_defaults(run=run)


def add_split(subparsers) -> None:
    from mslesion.data.splits import SPLIT_MODES

    p = subparsers.add_parser("split", help="(re)split a prepared dataset's patients; writes splits.json")
    p.add_argument("dataset_dir", type=Path)
    p.add_argument("--mode", choices=SPLIT_MODES, default="holdout")
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace the dataset's existing splits.json")

    def run(a):
        from mslesion.data.prep import resplit_dataset

        splits = resplit_dataset(a.dataset_dir, a.mode, test_fraction=a.test_fraction, val_fraction=a.val_fraction,
                                 folds=a.folds, seed=a.seed, overwrite=a.overwrite)  # fmt: skip
        for i, fold in enumerate(splits["folds"]):
            print(f"fold {i}: " + ", ".join(f"{k} {len(v)}" for k, v in fold.items()))

    p.set_defaults(run=run)


def _json_pairs(items: list[str] | None, flag: str) -> dict:
    """``key=value`` pairs whose values are JSON (``filter_num=[16,32,64]``), else plain strings."""
    import json

    out = {}
    for key, value in (_pairs(items, flag) or {}).items():
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _config_from(a, cls, mapping: dict, defaults: dict | None = None) -> object:
    """A config dataclass from ``defaults``, then ``--config file.json``, then the flags given."""
    base = dict(defaults or {})
    for layer in (_config_file(a), {k: v for k, v in mapping.items() if v is not None}):
        if "model_params" in layer and "model" not in layer and "model_params" in base:
            # parameters for the model chosen below this layer (e.g. weights for the recipe's encoder)
            layer = {**layer, "model_params": {**base["model_params"], **layer["model_params"]}}
        base.update(layer)
    return cls.from_dict(base)


def _config_file(a) -> dict:
    import json

    return json.loads(Path(a.config).read_text()) if a.config else {}


def _add_run_options(p) -> None:
    p.add_argument("dataset", nargs="?", help="prepared slice dataset folder (from mslesion prep)")
    p.add_argument("--config", help="JSON file of options; flags override it")
    p.add_argument("--model", help="registry name, see `mslesion models`")
    p.add_argument("--model-param", action="append", metavar="KEY=JSON", help="e.g. backbone=vgg16, filter_num=[16,32,64]")
    p.add_argument("--loss", help="bce, dice, bce_dice, tversky, focal_tversky")
    p.add_argument("--loss-param", action="append", metavar="KEY=JSON")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--fold", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--runs-root")
    p.add_argument("--tag")
    p.add_argument("--run-dir")


def _common(a) -> dict:
    return {
        "dataset": a.dataset, "model": a.model, "model_params": _json_pairs(a.model_param, "--model-param") or None,
        "loss": a.loss, "loss_params": _json_pairs(a.loss_param, "--loss-param") or None, "epochs": a.epochs,
        "batch_size": a.batch_size, "fold": a.fold, "seed": a.seed, "runs_root": a.runs_root, "tag": a.tag,
        "run_dir": a.run_dir,
    }  # fmt: skip


def _mixed_precision(choice: str | None) -> bool | None:
    if choice is None:
        return None
    if choice == "auto":
        from mslesion.train.runtime import auto_mixed_precision

        return auto_mixed_precision()
    return choice == "on"


def add_train(subparsers) -> None:
    from mslesion.study.experiments import DEFAULT_RECIPE, TRAINING_CONFIGS

    p = subparsers.add_parser("train", help="train a registry model on a prepared dataset; writes a run folder")
    _add_run_options(p)
    p.add_argument("--recipe", choices=("none", *TRAINING_CONFIGS),
                   help=f"named options to start from (default {DEFAULT_RECIPE}, the best measured on real data; "
                        "seed000: the backbone report's BCE on lesion slices; none: the TrainConfig defaults). A recipe "
                        "brings sm.unet with a MobileNetV2 encoder and batch 16 unless --model is given; "
                        "--config and flags override it")  # fmt: skip
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--augment", action="store_true", default=None)
    p.add_argument("--balance", action="store_true", default=None, help="class-balanced slice sampling")
    p.add_argument("--reduce-lr-patience", type=int)
    p.add_argument("--early-stopping-patience", type=int)
    p.add_argument("--val-fraction", type=float,
                   help="patients carved from train for validation when the split has none (default 0.1); "
                        "0: validate on the training patients (one or two patients)")
    p.add_argument("--max-minutes", type=float,
                   help="training-time budget: stop before the epoch that would pass it (--epochs stays the cap)")
    p.add_argument("--lesion-slices-only", action="store_true", default=None,
                   help="train on slices with lesion only (the backbone report); validation keeps every slice")
    p.add_argument("--strategy", choices=("auto", "tpu", "mirrored", "default"))
    p.add_argument("--mixed-precision", choices=("auto", "on", "off"), nargs="?", const="on", default=None,
                   help="float16/bfloat16 compute; auto: where it pays (GPU of compute capability >= 7, TPU)")
    p.add_argument("--jit-compile", action="store_true", default=None, help="XLA-compile the training step")
    p.add_argument("--input-pipeline", choices=("auto", "graph", "generator"),
                   help="auto (default): batches gathered in the graph from memory on a GPU/TPU, in Python on the CPU")
    p.add_argument("--no-tensorboard", dest="tensorboard", action="store_false", default=None,
                   help="write no TensorBoard logs (default: <run>/tensorboard: epoch scalars, validation images)")
    p.add_argument("--augment-on", choices=("auto", "host", "device"),
                   help="where --augment runs; auto (default): in the train step on a GPU (without XLA), "
                        "else a tf.data map on the host")
    p.add_argument("--deterministic", action="store_true", default=None,
                   help="repeat bit for bit on this machine (op determinism; augmentation runs serially)")
    p.add_argument("--overwrite", action="store_true",
                   help="start the run afresh: remove what an earlier run wrote in its folder")  # fmt: skip

    def run(a):
        import json

        from mslesion.study.experiments import recipe
        from mslesion.train.config import TrainConfig
        from mslesion.train.training import train

        name = a.recipe or _config_file(a).get("recipe") or DEFAULT_RECIPE
        own_model = a.model is not None or "model" in _config_file(a)
        defaults = {**recipe(name, with_model=not own_model), "recipe": None if name == "none" else name}
        config = _config_from(a, TrainConfig, defaults=defaults, mapping={
            **_common(a), "learning_rate": a.learning_rate, "augment": a.augment, "balance": a.balance,
            "reduce_lr_patience": a.reduce_lr_patience, "early_stopping_patience": a.early_stopping_patience,
            "strategy": a.strategy, "mixed_precision": _mixed_precision(a.mixed_precision),
            "deterministic": a.deterministic, "jit_compile": a.jit_compile, "input_pipeline": a.input_pipeline,
            "augment_on": a.augment_on, "tensorboard": a.tensorboard,
            "max_minutes": a.max_minutes, "lesion_slices_only": a.lesion_slices_only, "val_fraction": a.val_fraction,
        })  # fmt: skip
        print(f"recipe {name}: {config.model} {json.dumps(config.model_params)}, loss {config.loss}, "
              f"augment {config.augment}, balance {config.balance}, batch {config.batch_size}, "
              f"learning rate {config.learning_rate:g}")  # fmt: skip
        from mslesion.progress import fit_verbosity

        # a live progress bar with ETA on a terminal; one line per epoch when the output is a log file
        print(f"run folder: {train(config, verbose=fit_verbosity(), overwrite=a.overwrite)}")

    p.set_defaults(run=run)


def add_tune(subparsers) -> None:
    from mslesion.train.tuning import TUNERS

    p = subparsers.add_parser("tune", help="keras-tuner learning-rate search; writes tuning.csv")
    _add_run_options(p)
    p.add_argument("--tuner", choices=TUNERS)
    p.add_argument("--learning-rates", type=float, nargs="+", help="fixed values (default 1e-1 1e-2 1e-3 1e-4)")
    p.add_argument("--log-uniform", type=float, nargs=2, metavar=("LOW", "HIGH"))
    p.add_argument("--max-trials", type=int)
    p.add_argument("--overwrite", action="store_true", default=None,
                   help="start the search afresh (keras-tuner state and trial curves)")  # fmt: skip

    def run(a):
        from mslesion.train.tuning import TuneConfig, tune

        config = _config_from(a, TuneConfig, {
            **_common(a), "tuner": a.tuner, "learning_rates": a.learning_rates,
            "log_uniform": tuple(a.log_uniform) if a.log_uniform else None, "max_trials": a.max_trials,
            "overwrite": a.overwrite,
        })  # fmt: skip
        run_dir = tune(config)
        print((run_dir / "tuning.csv").read_text())
        print(f"run folder: {run_dir}")

    p.set_defaults(run=run)


def add_models(subparsers) -> None:
    p = subparsers.add_parser("models", help="list the model registry: names, defaults, parameter counts, backbones")
    p.add_argument("--no-counts", action="store_true", help="skip building each model at 256x256x3 to count parameters")

    def run(a):
        import keras

        from mslesion.models import build_model, count_params, list_models
        from mslesion.models.sm import SM_BACKBONES

        for info in list_models():
            line = f"{info['name']:<16} {info['description']}"
            if not info["available"]:
                line += f"  [unavailable: {info['reason']}]"
            print(line)
            print(f"{'':<16} defaults: {info['defaults']}")
            if not a.no_counts and info["available"]:
                shape = info["example_input"]
                c = count_params(build_model(info["name"], input_shape=shape))
                print(f"{'':<16} {'x'.join(map(str, shape))} with defaults: {c['total']:,} params "
                      f"({c['trainable']:,} trainable, {c['non_trainable']:,} non-trainable)")  # fmt: skip
                keras.backend.clear_session()
        print("\nsegmentation_models backbones (sm.unet / sm.fpn / sm.linknet backbone=...):")
        for name, (status, note) in SM_BACKBONES.items():
            print(f"  {name:<18} {status:<6} {note}")
        from mslesion.study.table_6_1 import REPORT_MODELS

        print("\nthe backbone report's Table 6.1 models (mslesion.study.table_6_1.build_report_model(key), weights='imagenet' on Kaggle/Colab):")
        for key, m in REPORT_MODELS.items():
            print(f"  {key:<26} {m.registry_name:<14} {m.total:>12,} params  {m.display_name}")

    p.set_defaults(run=run)


def add_evaluate(subparsers) -> None:
    from mslesion.evaluate.config import EvalConfig
    from mslesion.infer.inference import CHECKPOINTS
    from mslesion.infer.tta import TTA_MODES

    d = EvalConfig()
    p = subparsers.add_parser("evaluate", help="score a run per patient on whole volumes (voxel, HD95, lesion-wise)")
    p.add_argument("run_dir", type=Path, nargs="+", help="run folder(s) from mslesion train")
    p.add_argument("--part", default=d.part, help="split part of the run's dataset (default test)")
    p.add_argument("--source", help="a folder of other patients with masks (any layout prep reads) instead")
    p.add_argument("--layout", default=d.layout, help="layout of --source")
    p.add_argument("--patients", nargs="+", help="only these patient ids")
    p.add_argument("--checkpoint", choices=CHECKPOINTS, default=d.checkpoint, help="model (default): the better of best and final after batch-norm recalibration; best for runs without one")
    p.add_argument("--threshold", type=float, default=d.threshold)
    p.add_argument("--connectivity", type=int, choices=(6, 18, 26), default=d.connectivity)
    p.add_argument("--detection-fraction", type=float, default=d.detection_fraction,
                   help="fraction of a lesion that must be predicted to count as found (0: any overlap)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--write-masks", action="store_true", help="save predicted masks (NIfTI with the source affine)")
    p.add_argument("--out-dir", help="output folder (default <run>/eval_<part>[_tta-<mode>]); one run or --ensemble")
    p.add_argument("--overwrite", action="store_true", help="replace an evaluation written there before")
    p.add_argument("--tta", choices=TTA_MODES, default=d.tta,
                   help="test-time augmentation: mean over mirrored (flip) or also rotated (flip+rot90) slices")
    p.add_argument("--ensemble", action="store_true",
                   help="score the run folders as one ensemble (mean probability; needs --out-dir)")

    def run(a):
        from mslesion.evaluate.evaluation import evaluate

        if a.out_dir and len(a.run_dir) > 1 and not a.ensemble:
            raise SystemExit("--out-dir needs a single run folder, or --ensemble")
        if a.ensemble and not a.out_dir:
            raise SystemExit("--ensemble needs --out-dir: the evaluation belongs to no single run")
        groups = [a.run_dir] if a.ensemble else [[r] for r in a.run_dir]
        for first, *more in groups:
            config = EvalConfig(part=a.part, source=a.source, layout=a.layout, patients=a.patients,
                                checkpoint=a.checkpoint, threshold=a.threshold, connectivity=a.connectivity,
                                detection_fraction=a.detection_fraction, batch_size=a.batch_size,
                                write_masks=a.write_masks, out_dir=a.out_dir, overwrite=a.overwrite, tta=a.tta,
                                ensemble=[str(m) for m in more] or None)  # fmt: skip
            print(f"evaluating {first}" + (f" with {len(more)} more run(s) as one ensemble" if more else "")
                  + (f", test-time augmentation {a.tta}" if a.tta != "none" else ""))  # fmt: skip
            out = evaluate(first, config)
            print(f"per-patient results: {out / 'per_patient.csv'}")

    p.set_defaults(run=run)


def add_score(subparsers) -> None:
    p = subparsers.add_parser("score", help="score a folder of predicted masks against reference masks (no model)")
    p.add_argument("predictions", type=Path, help="folder of predicted masks, <name>.nii.gz or <name>_pred.nii.gz")
    p.add_argument("references", type=Path, help="folder of reference masks <name>.nii.gz")
    p.add_argument("--out-dir", type=Path, required=True, help="output folder (per_patient.csv, summary.json, ...)")
    p.add_argument("--threshold", type=float, default=0.5, help="cut for probability maps (binary masks: any)")
    p.add_argument("--connectivity", type=int, choices=(6, 18, 26), default=26)
    p.add_argument("--detection-fraction", type=float, default=0.0,
                   help="fraction of a lesion that must be predicted to count as found (0: any overlap)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace a scoring written there before")

    def run(a):
        from mslesion.evaluate.folder import score_folder

        print(f"scoring {a.predictions} against {a.references}")
        out = score_folder(a.predictions, a.references, a.out_dir, threshold=a.threshold, connectivity=a.connectivity,
                           detection_fraction=a.detection_fraction, overwrite=a.overwrite)  # fmt: skip
        print(f"per-patient results: {out / 'per_patient.csv'}")

    p.set_defaults(run=run)


def add_predict(subparsers) -> None:
    from mslesion.data.cohort import LAYOUTS
    from mslesion.infer.inference import CHECKPOINTS
    from mslesion.infer.tta import TTA_MODES

    p = subparsers.add_parser("predict", help="segment new patients with a trained run: mask NIfTI files + lesions.csv")
    p.add_argument("run_dir", type=Path, nargs="+",
                   help="run folder from mslesion train; several: one ensemble (mean probability)")
    p.add_argument("inputs", type=Path, help="a FLAIR .nii.gz, a folder of them, or a dataset folder")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--checkpoint", choices=CHECKPOINTS, default="model", help="model (default): the better of best and final after batch-norm recalibration; best for runs without one")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--connectivity", type=int, choices=(6, 18, 26), default=26)
    p.add_argument("--image-pattern", action="append", metavar="MOD=PATTERN",
                   help="e.g. flair='{patient}/FLAIR.nii.gz' (repeat per modality)")  # fmt: skip
    p.add_argument("--layout", choices=LAYOUTS, default="auto")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--overwrite", action="store_true", help="replace a predictions folder mslesion wrote at OUT before")
    p.add_argument("--tta", choices=TTA_MODES, default="none",
                   help="test-time augmentation: mean over mirrored (flip) or also rotated (flip+rot90) slices")

    def run(a):
        from mslesion.infer.predict import predict

        runs = a.run_dir[0] if len(a.run_dir) == 1 else a.run_dir
        result = predict(runs, a.inputs, a.out_dir, a.checkpoint, a.threshold, a.connectivity,
                         _pairs(a.image_pattern, "--image-pattern"), a.layout, a.batch_size,
                         overwrite=a.overwrite, tta=a.tta)  # fmt: skip
        if result.predicted:
            print(f"lesion summary: {result.lesions_csv}")
        else:
            print(f"nothing written: no patient could be predicted ({a.out_dir} left as it was)")
        print(result.summary())
        return 0 if result.predicted else 1

    p.set_defaults(run=run)


def add_export(subparsers) -> None:
    from mslesion.infer.export import FORMATS
    from mslesion.infer.inference import CHECKPOINTS

    p = subparsers.add_parser("export", help="export a 2D run for serving: SavedModel, LiteRT (TFLite) or ONNX")
    p.add_argument("run_dir", type=Path, help="run folder from mslesion train")
    p.add_argument("out_dir", type=Path, help="new folder: the artifact, preprocessing.json and export.json")
    p.add_argument("--format", choices=sorted(FORMATS), default="savedmodel")
    p.add_argument("--checkpoint", choices=CHECKPOINTS, default="model")
    p.add_argument("--overwrite", action="store_true", help="replace an export mslesion wrote at OUT before")

    def run(a):
        import json

        from mslesion.infer.export import export_run

        artifact = export_run(a.run_dir, a.out_dir, a.format, a.checkpoint, overwrite=a.overwrite)
        record = json.loads((a.out_dir / "export.json").read_text())
        print(f"exported {a.run_dir} ({record['checkpoint']}) as {a.format}: {artifact}; probabilities within "
              f"{record['max_abs_difference']:.2g} of the Keras model; preprocessing: {a.out_dir / 'preprocessing.json'}")

    p.set_defaults(run=run)


def add_report(subparsers) -> None:
    p = subparsers.add_parser("report", help="regenerate every table and figure from run folders into results/")
    p.add_argument("--runs", nargs="+", required=True, help="run folders or folders holding runs (Tables 6.1-6.3...)")
    p.add_argument("--backbones", nargs="+", default=[], help="runs (or roots) of the backbone comparison")
    p.add_argument("--tuning", nargs="+", default=[], help="learning-rate search folders (or roots)")
    p.add_argument("--epoch-study", help="one long run for the epoch-study table")
    p.add_argument("--epoch-every", type=int, default=25)
    p.add_argument("--dataset", help="prepared dataset, for the data figures (glimpse, slices, orthogonal views)")
    p.add_argument("--eval-name", default="eval_test", help="evaluation folder inside each run")
    p.add_argument("--out", default="results")
    p.add_argument("--title", default="mslesion report")
    p.add_argument("--overwrite", action="store_true", help="replace a report mslesion wrote at --out before")

    def run(a):
        from mslesion.report.build import ReportConfig, build_report
        from mslesion.report.tables import find_runs, find_tunings

        def expand(paths, finder):
            return [str(r) for p in paths for r in ([Path(p)] if finder is find_runs and (Path(p) / RUN_CONFIG)
                    .is_file() else finder(p))]  # fmt: skip

        report = build_report(ReportConfig(
            runs=expand(a.runs, find_runs), backbone_runs=expand(a.backbones, find_runs),
            tunings=expand(a.tuning, find_tunings), epoch_study_run=a.epoch_study, epoch_every=a.epoch_every,
            dataset=a.dataset, eval_name=a.eval_name, out=a.out, title=a.title, overwrite=a.overwrite))  # fmt: skip
        print(f"report: {report}")

    p.set_defaults(run=run)


def add_demo(subparsers) -> None:
    from mslesion.study.demo import DemoConfig

    d = DemoConfig()
    p = subparsers.add_parser("demo", help="the whole study, quick, on a synthetic cohort: data -> results/")
    p.add_argument("--data", default=d.data)
    p.add_argument("--runs", default=d.runs)
    p.add_argument("--out", default=d.out)
    p.add_argument("--patients", type=int, default=d.patients)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--overwrite", action="store_true", help="replace what an earlier demo wrote (data, runs, results)")
    p.add_argument("--deterministic", action="store_true", default=None,
                   help="every training run repeats bit for bit on this machine (op determinism)")

    def run(a):
        from mslesion.study.demo import run_demo

        report = run_demo(DemoConfig(data=a.data, runs=a.runs, out=a.out, patients=a.patients, epochs=a.epochs,
                                     seed=a.seed, overwrite=a.overwrite,
                                     deterministic=bool(a.deterministic)))  # fmt: skip
        print(f"results: {report.parent}/ (tables/, figures/, report.md)")

    p.set_defaults(run=run)


def add_prep3d(subparsers) -> None:
    from mslesion.data.splits import SPLIT_MODES

    p = subparsers.add_parser("prep3d", help="normalised whole volumes (.npy) for 3D patch models (the 3DR2AUNet paper, 2024)")
    p.add_argument("source", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--layout", default="auto")
    p.add_argument("--modalities", nargs="+", default=["flair"])
    p.add_argument("--split", choices=SPLIT_MODES, default="train_val_test")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--allow-empty-masks", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="replace volumes mslesion prep3d wrote at OUT before")

    def run(a):
        from mslesion.train.patches import prepare_volumes

        done = prepare_volumes(a.source, a.out_dir, tuple(a.modalities), split=a.split, test_fraction=a.test_fraction,
                               val_fraction=a.val_fraction, seed=a.seed, layout=a.layout,
                               allow_empty_masks=a.allow_empty_masks, overwrite=a.overwrite)  # fmt: skip
        print(f"volumes: {done['out_dir']}: {len(done['patients'])} patients, {len(done['failures'])} failed")
        for f in done["failures"]:
            print(f"  FAILED {f['patient']}: {f['error']}: {f['message']}")
        return 1 if not done["patients"] else 0

    p.set_defaults(run=run)


def add_train3d(subparsers) -> None:
    p = subparsers.add_parser("train3d", help="train a 3D patch model (default native.r2_att_unet_3d) on prep3d volumes")
    _add_run_options(p)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--patch", type=int, nargs=3, metavar=("D", "H", "W"))
    p.add_argument("--stride", type=int, nargs=3, metavar=("D", "H", "W"))
    p.add_argument("--lesion-fraction", type=float, help="share of each batch drawn from patches with lesion")
    p.add_argument("--patches-per-epoch", type=int)
    p.add_argument("--deterministic", action="store_true", default=None,
                   help="repeat bit for bit on this machine (op determinism; augmentation runs serially)")
    p.add_argument("--overwrite", action="store_true",
                   help="start the run afresh: remove what an earlier run wrote in its folder")  # fmt: skip

    def run(a):
        from mslesion.train.training3d import Train3DConfig, train_3d

        common = _common(a)
        if common["model"] is None:
            common.pop("model")
        config = _config_from(a, Train3DConfig, {
            **common, "learning_rate": a.learning_rate, "patch": a.patch, "stride": a.stride,
            "lesion_fraction": a.lesion_fraction, "patches_per_epoch": a.patches_per_epoch,
            "deterministic": a.deterministic,
        })  # fmt: skip
        print(f"run folder: {train_3d(config, overwrite=a.overwrite)}")

    p.set_defaults(run=run)


def _error_line(exc: BaseException) -> str:
    """An expected failure as one line: ``<path or value>: <what is wrong>; <what to do>``."""
    if isinstance(exc, FileExistsError) and exc.filename and exc.strerror:  # raised by the OS, not by mslesion
        text = f"{exc.filename}: already exists; choose another path, or move it away first"
    else:
        text = str(exc)
    return " ".join(text.split())  # messages quoting a file's text may hold newlines


def _debug_from_env() -> bool:
    import os

    return os.environ.get("MSLESION_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mslesion`` console command.

    Expected failures (a missing run, a damaged file, an unknown model, an output
    that may not be written, ...) print one line ``mslesion: error: ...`` on
    stderr and return 2; ``--debug`` or ``MSLESION_DEBUG=1`` lets them raise,
    with the traceback. mslesion's own warnings print as ``mslesion: warning: ...``.
    """
    import warnings

    from mslesion import QUIET_TENSORFLOW
    from mslesion.env.quiet_import import import_tensorflow
    from mslesion.errors import MslesionError, MslesionWarning

    # the subcommands' options come from modules that import TensorFlow: import it first, filtered
    import_tensorflow(quiet=QUIET_TENSORFLOW and not _debug_from_env() and "--debug" not in (argv or sys.argv))
    parser = argparse.ArgumentParser(prog="mslesion", description="MS lesion segmentation toolkit")
    parser.add_argument("--version", action="version", version=f"mslesion {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error instead of one line (also MSLESION_DEBUG=1)")  # fmt: skip
    subparsers = parser.add_subparsers(required=True, metavar="command")
    for add in (add_synth, add_prep, add_split, add_models, add_train, add_tune, add_evaluate, add_score, add_predict, add_export,
                add_report, add_demo, add_prep3d, add_train3d):
        add(subparsers)
    args = parser.parse_args(argv)
    debug = args.debug or _debug_from_env()
    with warnings.catch_warnings():  # restores warnings.showwarning when the command ends
        default_show = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, MslesionWarning) and not debug:
                print(f"mslesion: warning: {_error_line(message)}", file=sys.stderr)
            else:
                default_show(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        try:
            return int(args.run(args) or 0)
        except (MslesionError, FileExistsError) as exc:
            if debug:
                raise
            print(f"mslesion: error: {_error_line(exc)}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
