"""Prediction and scoring subcommands: ``evaluate``, ``score``, ``predict``, ``export``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mslesion.cli.options import add_config_flags, config_from_flags, key_value_pairs

__all__ = ["add_evaluate", "add_score", "add_predict", "add_export", "add_postprocess"]


def add_evaluate(subparsers) -> None:
    from mslesion.evaluate.config import EvalConfig

    p = subparsers.add_parser("evaluate", help="score a run per patient on whole volumes (voxel, HD95, lesion-wise)")
    p.add_argument("run_dir", type=Path, nargs="+", help="run folder(s) from mslesion train")
    add_config_flags(p, EvalConfig, skip=("ensemble",))
    p.add_argument("--ensemble", action="store_true",
                   help="score the run folders as one ensemble (mean probability; needs --out-dir)")
    p.add_argument("--cross-validation", action="store_true", help=(
        "the run folders (or a folder of fold_<k> runs) are the folds of one cross-validation: each patient is "
        "scored by the fold that held it out; per-fold means and mean ± SD across folds (needs --out-dir)"))

    def run(a):
        from mslesion.evaluate.evaluation import evaluate

        if a.cross_validation:
            from mslesion.evaluate.cross_validation import evaluate_folds

            if a.ensemble or not a.out_dir:
                raise SystemExit("--cross-validation needs --out-dir, and does not combine with --ensemble")
            out = evaluate_folds(a.run_dir, config_from_flags(a, EvalConfig, skip=("ensemble",)))
            print(f"per-fold results: {out / 'folds.csv'}; per-patient: {out / 'per_patient.csv'}")
            return

        if a.out_dir and len(a.run_dir) > 1 and not a.ensemble:
            raise SystemExit("--out-dir needs a single run folder, or --ensemble")
        if a.ensemble and not a.out_dir:
            raise SystemExit("--ensemble needs --out-dir: the evaluation belongs to no single run")
        groups = [a.run_dir] if a.ensemble else [[r] for r in a.run_dir]
        for first, *more in groups:
            config = replace(config_from_flags(a, EvalConfig, skip=("ensemble",)),
                             ensemble=[str(m) for m in more] or None)
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
    from mslesion.infer.uncertainty import UNCERTAINTY

    p = subparsers.add_parser("predict", help="segment new patients with a trained run: mask NIfTI files + lesions.csv")
    p.add_argument("run_dir", type=Path, nargs="+",
                   help="run folder from mslesion train; several: one ensemble (mean probability)")
    p.add_argument("inputs", type=Path, help="a FLAIR .nii.gz, a folder of them, or a dataset folder")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--checkpoint", choices=CHECKPOINTS, default="model", help="model (default): the better of best and final after batch-norm recalibration; best for runs without one")
    p.add_argument("--threshold", type=float, help="probability cut (default: the run's postprocess.json, else 0.5)")
    p.add_argument("--no-postprocess", dest="postprocess", action="store_false",
                   help="ignore the run's postprocess.json (chosen on its validation patients by mslesion postprocess)")
    p.add_argument("--connectivity", type=int, choices=(6, 18, 26), default=26)
    p.add_argument("--image-pattern", action="append", metavar="MOD=PATTERN",
                   help="e.g. flair='{patient}/FLAIR.nii.gz' (repeat per modality)")  # fmt: skip
    p.add_argument("--layout", choices=LAYOUTS, default="auto")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--overwrite", action="store_true", help="replace a predictions folder mslesion wrote at OUT before")
    p.add_argument("--tta", choices=TTA_MODES, default="none",
                   help="test-time augmentation: mean over mirrored (flip) or also rotated (flip+rot90) slices")
    p.add_argument("--uncertainty", choices=UNCERTAINTY, default="none", help=(
        "write a voxel-wise uncertainty map per patient and uncertainty.csv (per lesion): std over the ensemble "
        "members and TTA passes (needs several), or entropy of the mean probability (bits)"))
    p.add_argument("--brain-mask-pattern", metavar="PATTERN", help=(
        "for a run prepared with --skull-strip mask: the new patients' brain masks, relative to INPUTS, "
        "e.g. '{patient}/brainmask.nii.gz'"))

    def run(a):
        from mslesion.infer.predict import predict

        runs = a.run_dir[0] if len(a.run_dir) == 1 else a.run_dir
        result = predict(runs, a.inputs, a.out_dir, a.checkpoint, a.threshold, a.connectivity,
                         key_value_pairs(a.image_pattern, "--image-pattern"), a.layout, a.batch_size,
                         overwrite=a.overwrite, tta=a.tta, postprocess=a.postprocess,
                         uncertainty=a.uncertainty, brain_mask_pattern=a.brain_mask_pattern)  # fmt: skip
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


def add_postprocess(subparsers) -> None:
    from mslesion.evaluate.postprocess_search import MIN_SIZES, OBJECTIVES, THRESHOLDS
    from mslesion.infer.inference import CHECKPOINTS
    from mslesion.infer.tta import TTA_MODES

    p = subparsers.add_parser("postprocess", help=(
        "choose a run's threshold, minimum lesion size and hole filling on its validation patients; "
        "predict and evaluate then apply them"))
    p.add_argument("run_dir", type=Path, help="a 2D run folder from mslesion train")
    p.add_argument("--objective", choices=OBJECTIVES, default="dice", help="mean per-patient score maximised")
    p.add_argument("--thresholds", type=float, nargs="+", default=list(THRESHOLDS))
    p.add_argument("--min-sizes", type=float, nargs="+", default=list(MIN_SIZES),
                   help="smallest lesion kept, mm³ (voxels for data without a voxel size)")
    p.add_argument("--no-fill-holes", dest="fill_holes", action="store_false", help="do not try hole filling")
    p.add_argument("--checkpoint", choices=CHECKPOINTS, default="model")
    p.add_argument("--tta", choices=TTA_MODES, default="none")
    p.add_argument("--batch-size", type=int, default=16)

    def run(a):
        from mslesion.evaluate.postprocess_search import choose_postprocess

        choose_postprocess(a.run_dir, a.objective, thresholds=a.thresholds, min_sizes=a.min_sizes,
                           fill_holes=(False, True) if a.fill_holes else (False,), checkpoint=a.checkpoint,
                           batch_size=a.batch_size, tta=a.tta)  # fmt: skip

    p.set_defaults(run=run)
