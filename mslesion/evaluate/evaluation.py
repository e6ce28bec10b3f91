"""Score a trained run on whole volumes, per patient (``mslesion evaluate``).

For each patient every axial slice is predicted (:mod:`mslesion.infer.inference`),
mapped back to the native grid and thresholded; the prediction is compared
with the ground truth on the whole volume. Output folder (default
``<run>/eval_<part>``, or ``eval_<source folder name>``)::

    per_patient.csv   voxel metrics, volumes (mL), HD95 (mm), lesion-wise counts
    lesions.csv       one row per patient and lesion-size bracket (Røvang 2021)
    slices.csv        SLICE-LEVEL Dice/IoU on the axial slices with ground-truth
                      lesion (the backbone report's test unit), for comparison with its tables
    examples.npz      good/average/bad slices by slice-Dice tertile (Appendix II figure)
    lesion_uncertainty.csv  with ``uncertainty``: each predicted lesion's mean/max uncertainty, true or false
    summary.json      means, medians, nan counts, pooled slice-level Dice/IoU,
                      the settings (threshold, connectivity, detection fraction,
                      checkpoint) and which run and patients it came from
    failures.csv      patients that could not be evaluated, and why
    masks/            predicted masks (``write_masks``), source affine and header

Without voxel spacing (TIFF datasets) volumes and HD95 are given in voxels and
the ``*_ml``/``*_mm`` columns are nan.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from mslesion.data.cohort import discover_cases
from mslesion.data.loading import load_case
from mslesion.errors import MslesionError, RunNotFoundError
from mslesion.evaluate.config import EvalConfig
from mslesion.evaluate.lesion_uncertainty import uncertainty_summary
from mslesion.evaluate.loop import Scoring, Subject, score_subjects
from mslesion.evaluate.summary import describe_trust, evaluation_summary
from mslesion.fileio import save_json
from mslesion.folders import DatasetFolder, RunFolder
from mslesion.infer.inference import TrainedRun, open_runs, predict_volume, write_mask
from mslesion.infer.postprocess import resolve_postprocess
from mslesion.infer.tta import transforms
from mslesion.infer.uncertainty import UNCERTAINTY
from mslesion.outputs import output_dir
from mslesion.paths import SPLITS

__all__ = ["EvalConfig", "evaluate", "scoring_of", "cases_of"]


def cases_of(run: TrainedRun, config: EvalConfig) -> tuple[list, list[dict], str]:
    """The cases ``config`` asks for (its source, else the split part of the run's dataset): ``(cases, rejected, label)``."""
    prep = run.prep
    if config.source:
        found = discover_cases(config.source, config.layout, prep.image_patterns, prep.mask_patterns)
        wanted = config.patients
        label = f"source {Path(config.source).resolve()}"
    else:
        dataset = run.config["dataset"]
        if not (Path(dataset) / SPLITS).is_file():
            where = "" if Path(dataset).is_absolute() else f" (a relative path, read from {Path.cwd()})"
            raise RunNotFoundError(run.run_dir, f"its dataset {dataset}{where} has no splits.json; run from the folder "
                                                "it was trained in, or give other patients with --source")  # fmt: skip
        wanted = config.patients or DatasetFolder(dataset).patients(config.part, run.config.get("fold", 0))
        if not wanted:
            raise ValueError(f"{dataset}: the split has no {config.part!r} patients in fold {run.config.get('fold', 0)}")
        source = run.prep_record.get("source")
        if not source or not Path(source).is_dir():
            raise FileNotFoundError(f"{run.run_dir}: the volumes it was prepared from ({source}) are gone; pass source=")
        layout = run.prep_record.get("layout_found") or "auto"
        found = discover_cases(source, layout, prep.image_patterns, prep.mask_patterns)
        label = f"{config.part} part of {dataset} (fold {run.config.get('fold', 0)}), volumes from {source}"
    cases = found.cases if wanted is None else [c for c in found.cases if c.patient_id in set(map(str, wanted))]
    rejected = [r for r in found.rejected if wanted is None or r["patient"] in set(map(str, wanted))]
    missing = set(map(str, wanted or [])) - {c.patient_id for c in cases} - {r["patient"] for r in rejected}
    if missing:
        raise FileNotFoundError(f"patients {sorted(missing)} not found under {found.cases[0].folder.parent}")
    return cases, rejected, label


def _inputs(run: TrainedRun, config: EvalConfig) -> list:
    """What an evaluation reads, which its output folder must not overlap."""
    return [config.source or run.prep_record.get("source"), run.config.get("dataset")]


def _default_out(run_dir: Path, config: EvalConfig) -> Path:
    if config.out_dir:
        return Path(config.out_dir)
    if config.ensemble:
        raise ValueError(f"{run_dir}: an ensemble's evaluation belongs to no single run; give out_dir (--out)")
    name = f"eval_{Path(config.source).name}" if config.source else f"eval_{config.part}"
    return run_dir / (name if config.tta == "none" else f"{name}_tta-{config.tta}")


def evaluate(run_dir: str | Path, config: EvalConfig | dict | None = None, verbose: bool = True) -> Path:
    """Evaluate one run on whole volumes; returns the output folder (see module doc).

    A patient that cannot be loaded (corrupt file, missing modality...) is
    listed in ``failures.csv`` and the others are still evaluated. The folder is
    written whole (:func:`mslesion.outputs.output_dir`): an evaluation written
    before is replaced only with ``config.overwrite``.
    """
    config = EvalConfig.from_dict(config) if isinstance(config, dict) else (config or EvalConfig())
    run_dir = Path(run_dir)
    if RunFolder.open(run_dir).kind == "3d":  # a 3D patch run (mslesion train3d)
        from mslesion.evaluate.evaluation3d import evaluate_3d

        return evaluate_3d(run_dir, config, verbose=verbose)
    transforms(config.tta)  # an unknown mode, and an ensemble without out_dir, fail before any model is loaded
    _check_uncertainty(config)
    out = _default_out(run_dir, config)
    members = open_runs([run_dir, *map(Path, config.ensemble or [])], config.checkpoint)
    run = members[0]
    cases, rejected, label = cases_of(run, config)
    inputs = _inputs(run, config) + [str(m.run_dir) for m in members[1:]]
    with output_dir(out, "evaluation", overwrite=config.overwrite, inputs=inputs) as tmp:
        _score(members, cases, rejected, label, config, tmp, verbose)
    return out


def _check_uncertainty(config: EvalConfig) -> None:
    if config.uncertainty not in UNCERTAINTY:
        raise ValueError(f"uncertainty must be one of {UNCERTAINTY}, not {config.uncertainty!r}")
    if config.uncertainty == "std" and config.tta == "none" and not config.ensemble:
        raise ValueError("uncertainty 'std' needs several passes: give --tta or --ensemble, or use 'entropy'")


def scoring_of(config: EvalConfig, run_dir: str | Path | None = None) -> Scoring:
    """The options of ``config`` the per-patient loop uses, with ``run_dir``'s post-processing where it applies."""
    post = resolve_postprocess(run_dir, config.threshold, config.postprocess and run_dir is not None,
                               ensemble=bool(config.ensemble))  # fmt: skip
    return Scoring(post.threshold, config.connectivity, config.detection_fraction, config.write_masks,
                   config.examples_per_tertile, post=post, uncertainty=getattr(config, "uncertainty", "none"))  # fmt: skip


def _score(members: list[TrainedRun], cases: list, rejected: list[dict], label: str, config: EvalConfig, out: Path,
           verbose: bool) -> None:  # fmt: skip
    """Evaluate ``cases`` with the run (or the ensemble) ``members`` and write every table into ``out``."""
    run = members[0]

    def load(case):
        loaded = load_case(case, allow_empty_mask=True, source=run.prep.source())
        return Subject(loaded.patient_id, loaded.mask, loaded.spacing_zhw_mm, data=loaded, image=loaded.stack[..., 0],
                       write_mask=lambda pred, path: write_mask(pred, loaded, path),
                       mask_name=f"{loaded.patient_id}_pred{'' if loaded.affine is None else '.nii.gz'}")  # fmt: skip

    subjects = [(case.patient_id, lambda case=case: load(case)) for case in cases]
    scoring = scoring_of(config, run.run_dir)
    per_patient, slices, failures = score_subjects(
        subjects, lambda s: predict_volume(members, s.data, config.batch_size, config.tta, config.uncertainty), out,
        scoring,
        errors=(MslesionError,), failures=rejected, verbose=verbose)  # fmt: skip
    origin = {"run": str(run.run_dir), "checkpoint": run.checkpoint, "model": run.config.get("model")}
    summary = evaluation_summary(origin, {**asdict(config), "threshold": scoring.threshold}, label, per_patient,
                                 slices, failures)  # fmt: skip
    summary["members"] = [str(m.run_dir) for m in members]
    summary["tta"] = config.tta
    summary["postprocess"] = {**asdict(scoring.post), "applied": scoring.post.describe()}
    if config.uncertainty != "none":
        import pandas as pd

        lesions = pd.read_csv(out / "lesion_uncertainty.csv").to_dict("records")
        summary["uncertainty"] = uncertainty_summary(lesions, config.uncertainty)
    save_json(out / "summary.json", summary)
    if verbose:
        print(f"  {describe_trust(summary['trust'])}")
