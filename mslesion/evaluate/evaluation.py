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
    summary.json      means, medians, nan counts, pooled slice-level Dice/IoU,
                      the settings (threshold, connectivity, detection fraction,
                      checkpoint) and which run and patients it came from
    failures.csv      patients that could not be evaluated, and why
    masks/            predicted masks (``write_masks``), source affine and header

Without voxel spacing (TIFF datasets) volumes and HD95 are given in voxels and
the ``*_ml``/``*_mm`` columns are nan.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mslesion import __version__
from mslesion.data.cohort import discover_cases
from mslesion.data.loading import load_case
from mslesion.errors import MslesionError, RunNotFoundError
from mslesion.evaluate.lesions import bracket_rows, compute_lesion_metrics
from mslesion.evaluate.metrics import compute_dice, compute_iou, confusion
from mslesion.evaluate.volume_metrics import compute_patient_metrics
from mslesion.fileio import atomic_path, save_json, save_text
from mslesion.infer.inference import TrainedRun, open_runs, predict_volume, read_run_config, write_mask
from mslesion.infer.tta import transforms
from mslesion.outputs import check_inside, output_dir
from mslesion.paths import SPLITS
from mslesion.train.config import config_from_dict

__all__ = ["EvalConfig", "evaluate", "evaluate_volume", "write_tables", "SUMMARY_METRICS", "COLLAPSE_DICE",
           "trust_summary", "describe_trust"]

#: Per-patient columns summarised (mean, median, std, nan count) in summary.json and the report.
SUMMARY_METRICS = (
    "dice", "iou", "sensitivity", "specificity", "ppv", "npv", "extra_fraction", "abs_volume_diff_ml",
    "rel_volume_diff", "hd95_mm", "lesion_tpr", "lesion_fpr", "lesion_f1",
)  # fmt: skip


@dataclass
class EvalConfig:
    """How to evaluate a run; saved in ``summary.json``."""

    part: str = "test"
    source: str | None = None  # a folder of patients with masks instead of the run's own split
    layout: str = "auto"  # layout of ``source``
    patients: list[str] | None = None  # a subset of the part / source
    checkpoint: str = "model"
    threshold: float = 0.5
    connectivity: int = 26
    detection_fraction: float = 0.0
    batch_size: int = 16
    write_masks: bool = False
    examples_per_tertile: int = 1
    out_dir: str | None = None
    overwrite: bool = False  # replace an evaluation written before at the output folder
    tta: str = "none"  # test-time augmentation (mslesion.infer.tta): none, flip, flip+rot90
    ensemble: list[str] | None = None  # more runs whose probabilities are averaged with the run's (needs out_dir)

    @classmethod
    def from_dict(cls, d: dict) -> EvalConfig:
        return config_from_dict(cls, d, "evaluation")


def evaluate_volume(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    spacing_zhw_mm: tuple[float, float, float] | None,
    connectivity: int = 26,
    detection_fraction: float = 0.0,
) -> tuple[dict, dict]:
    """All per-patient numbers for one ``(Z, H, W)`` pair: (flat metrics row, lesion-wise result)."""
    spacing = spacing_zhw_mm or (1.0, 1.0, 1.0)
    row = compute_patient_metrics(y_true, y_pred, spacing)
    row["volume_true_voxels"] = int(np.count_nonzero(y_true))
    row["volume_pred_voxels"] = int(np.count_nonzero(y_pred))
    if spacing_zhw_mm is None:  # no physical units: keep the voxel figures, blank the mm/mL ones
        row["hd95_voxels"] = row["hd95_mm"]
        for key in ("volume_true_ml", "volume_pred_ml", "abs_volume_diff_ml", "hd95_mm"):
            row[key] = math.nan
    lesions = compute_lesion_metrics(y_true, y_pred, connectivity, detection_fraction)
    row.update({k: v for k, v in lesions.items() if k != "brackets"})
    return row, lesions


def _cases(run: TrainedRun, config: EvalConfig) -> tuple[list, str]:
    prep = run.prep
    if config.source:
        found = discover_cases(config.source, config.layout, prep.image_patterns, prep.mask_patterns)
        wanted = config.patients
        label = f"source {Path(config.source).resolve()}"
    else:
        from mslesion.train.datasets import split_patients_of

        dataset = run.config["dataset"]
        if not (Path(dataset) / SPLITS).is_file():
            where = "" if Path(dataset).is_absolute() else f" (a relative path, read from {Path.cwd()})"
            raise RunNotFoundError(run.run_dir, f"its dataset {dataset}{where} has no splits.json; run from the folder "
                                                "it was trained in, or give other patients with --source")  # fmt: skip
        wanted = config.patients or split_patients_of(dataset, config.part, run.config.get("fold", 0))
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
    if "patch" in read_run_config(run_dir):  # a 3D patch run (mslesion train3d)
        return _evaluate_3d(run_dir, config, verbose)
    transforms(config.tta)  # an unknown mode, and an ensemble without out_dir, fail before any model is loaded
    out = _default_out(run_dir, config)
    members = open_runs([run_dir, *map(Path, config.ensemble or [])], config.checkpoint)
    run = members[0]
    cases, rejected, label = _cases(run, config)
    inputs = _inputs(run, config) + [str(m.run_dir) for m in members[1:]]
    with output_dir(out, "evaluation", overwrite=config.overwrite, inputs=inputs) as tmp:
        _score(run, cases, rejected, label, config, tmp, verbose, members)
    return out


def _score(run: TrainedRun, cases: list, rejected: list[dict], label: str, config: EvalConfig, out: Path,
           verbose: bool, members: list[TrainedRun] | None = None) -> None:  # fmt: skip
    """Evaluate ``cases`` and write every table into ``out``; ``members``: an ensemble including ``run``."""
    members = members or [run]
    rows, bracket_table, slice_rows, candidates = [], [], [], []
    failures = list(rejected)
    for case in cases:
        try:
            loaded = load_case(case, run.prep.modalities, run.prep.mask_modality, allow_empty_mask=True)
        except MslesionError as exc:
            failures.append({"patient": case.patient_id, "error": type(exc).__name__, "message": str(exc)})
            if verbose:
                print(f"  FAILED {case.patient_id}: {exc}")
            continue
        prob = predict_volume(members, loaded, config.batch_size, config.tta)
        pred = prob > config.threshold
        row, lesions = evaluate_volume(loaded.mask, pred, loaded.spacing_zhw_mm, config.connectivity,
                                       config.detection_fraction)  # fmt: skip
        per_slice = _slice_rows(loaded, pred)
        lesion_slices = [r["slice_index"] for r in per_slice]
        pooled = confusion(loaded.mask[lesion_slices], pred[lesion_slices])
        rows.append({"patient": loaded.patient_id, "n_slices": int(loaded.stack.shape[0]),
                     "spacing_zhw_mm": "x".join(f"{s:g}" for s in loaded.spacing_zhw_mm or ()),
                     **row, "slice_level_dice": compute_dice(pooled)})  # fmt: skip
        bracket_table += bracket_rows(lesions, patient=loaded.patient_id)
        slice_rows += per_slice
        # only the lesion slices are kept for the example figure (image as float16: it is only drawn)
        candidates += [(r["dice"], r["patient"], r["slice_index"], loaded.stack[r["slice_index"], ..., 0]
                        .astype(np.float16), loaded.mask[r["slice_index"]], pred[r["slice_index"]]) for r in per_slice]
        if config.write_masks:
            suffix = "" if loaded.affine is None else ".nii.gz"
            write_mask(pred, loaded, check_inside(out, out / "masks" / f"{loaded.patient_id}_pred{suffix}"))
        if verbose:
            print(f"  {loaded.patient_id}: Dice {row['dice']:.3f}, lesions {row['tp_lesions']}/{row['n_true_lesions']} "
                  f"found, {row['fp_lesions']} false")  # fmt: skip
    per_patient = write_tables(out, rows, bracket_table, slice_rows, failures)
    _save_examples(out / "examples.npz", candidates, config.examples_per_tertile)
    summary = _summary(run, config, label, per_patient, slice_rows, failures)
    summary["members"] = [str(m.run_dir) for m in members]
    summary["tta"] = config.tta
    save_json(out / "summary.json", summary)
    if verbose:
        print(f"  {describe_trust(summary['trust'])}")


def _evaluate_3d(run_dir: Path, config: EvalConfig, verbose: bool) -> Path:
    from mslesion.train.training3d import evaluate_3d

    if config.source:
        raise ValueError(f"{run_dir}: a 3D run evaluates the patients of its prepared volumes; --source is 2D only")
    if config.tta != "none" or config.ensemble:
        raise ValueError(f"{run_dir}: test-time augmentation and ensembles are for 2D runs so far, not 3D patch runs")
    return evaluate_3d(run_dir, config.part, config.checkpoint, config.threshold, config.connectivity,
                       config.detection_fraction, config.write_masks, patients=config.patients,
                       out_dir=config.out_dir, verbose=verbose, overwrite=config.overwrite)  # fmt: skip


def write_tables(out: Path, rows: list[dict], bracket_table: list[dict], slice_rows: list[dict],
                 failures: list[dict]):  # fmt: skip
    """Write per_patient.csv, lesions.csv, slices.csv and failures.csv (2D and 3D runs); returns per_patient."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    per_patient = pd.DataFrame(rows)
    _write_csv(out / "per_patient.csv", per_patient)
    _write_csv(out / "lesions.csv", pd.DataFrame(bracket_table))
    _write_csv(out / "slices.csv", pd.DataFrame(slice_rows))
    _write_csv(out / "failures.csv", pd.DataFrame(failures, columns=["patient", "error", "message"]))
    return per_patient


def _slice_rows(loaded, pred: np.ndarray) -> list[dict]:
    """Slice-level Dice/IoU on native axial slices that hold ground-truth lesion."""
    rows = []
    for k in np.flatnonzero(loaded.mask.any(axis=(1, 2))):
        c = confusion(loaded.mask[k], pred[k])
        rows.append({"patient": loaded.patient_id, "slice_index": int(k), "lesion_pixels": c.tp + c.fn,
                     "pred_pixels": c.tp + c.fp, "overlap_pixels": c.tp, "dice": compute_dice(c), "iou": compute_iou(c)})  # fmt: skip
    return rows


def _save_examples(path: Path, candidates: list, per_tertile: int) -> None:
    """Good / average / bad slices: the median slices of each Dice tertile, with image, truth and prediction."""
    arrays: dict[str, np.ndarray] = {}
    if candidates:
        order = sorted(candidates, key=lambda c: (-c[0], c[1], c[2]))
        thirds = np.array_split(np.arange(len(order)), 3)
        for name, idx in zip(("good", "average", "bad"), thirds):
            if not len(idx):
                continue
            mid = len(idx) // 2
            lo = max(0, mid - per_tertile // 2)
            for j, i in enumerate(idx[lo : lo + per_tertile]):
                dice, patient, k, image, truth, pred = order[i]
                key = f"{name}_{j}"
                arrays[f"{key}/image"] = image.astype(np.float32)
                arrays[f"{key}/truth"] = truth
                arrays[f"{key}/pred"] = pred
                arrays[f"{key}/info"] = np.array([patient, str(k), f"{dice:.6f}", name])
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)


#: A patient whose whole-volume Dice is below this counts as a collapsed prediction.
COLLAPSE_DICE = 0.1


def _stats(values: np.ndarray) -> dict:
    finite = values[np.isfinite(values)]
    q = np.percentile(finite, [0, 25, 50, 75, 100]) if finite.size else [math.nan] * 5
    return {
        "mean": float(finite.mean()) if finite.size else math.nan,
        "median": float(q[2]), "std": float(finite.std()) if finite.size else math.nan,
        "q1": float(q[1]), "q3": float(q[3]), "min": float(q[0]), "max": float(q[4]),
        "n": int(finite.size), "n_nan": int(values.size - finite.size),
    }  # fmt: skip


def trust_summary(per_patient) -> dict:
    """What a reader needs before trusting a mean Dice: its spread, collapsed patients, volumes.

    Args:
        per_patient: a table with ``patient``, ``dice`` and ``volume_true_ml`` /
            ``volume_pred_ml`` (or ``volume_*_voxels`` when there is no voxel size).

    Returns:
        ``{"dice": stats, "collapsed": {...}, "lesion_volume": {...}}``; stats hold
        mean, median, std, quartiles, min, max and counts (nan patients counted, not averaged).
    """
    n = len(per_patient)
    dice = per_patient["dice"].to_numpy(float) if n else np.zeros(0)
    low = [str(p) for p, d in zip(per_patient["patient"], dice) if np.isfinite(d) and d < COLLAPSE_DICE] if n else []
    has_ml = n and "volume_true_ml" in per_patient and np.isfinite(per_patient["volume_true_ml"].to_numpy(float)).any()
    unit = "ml" if has_ml else "voxels"
    true = per_patient[f"volume_true_{unit}"].to_numpy(float) if n else np.zeros(0)
    pred = per_patient[f"volume_pred_{unit}"].to_numpy(float) if n else np.zeros(0)
    ratio = np.divide(pred, true, out=np.full_like(pred, np.nan), where=true > 0)
    return {
        "dice": _stats(dice),
        "collapsed": {"dice_below": COLLAPSE_DICE, "n": len(low), "fraction": len(low) / n if n else math.nan,
                      "patients": low},  # fmt: skip
        "lesion_volume": {"unit": unit, "true_mean": _stats(true)["mean"], "pred_mean": _stats(pred)["mean"],
                          "pred_over_true": _stats(ratio)},  # fmt: skip
    }


def describe_trust(trust: dict) -> str:
    """One line for the terminal: Dice spread, collapsed patients, predicted vs true lesion volume."""
    d, c, v = trust["dice"], trust["collapsed"], trust["lesion_volume"]
    if not d["n"]:
        return "no patient with a defined Dice"
    unit = "mL" if v["unit"] == "ml" else "voxels"
    return (f"Dice per patient {d['mean']:.3f} ± {d['std']:.3f} (median {d['median']:.3f}, IQR {d['q1']:.3f}-"
            f"{d['q3']:.3f}, n={d['n']}); {c['n']} of {d['n'] + d['n_nan']} patients below {c['dice_below']:g} "
            f"(collapsed); lesion volume predicted {v['pred_mean']:.3g} vs true {v['true_mean']:.3g} {unit} (mean), "
            f"median ratio {v['pred_over_true']['median']:.2f}")  # fmt: skip


def _summary(run: TrainedRun, config: EvalConfig, label: str, per_patient, slice_rows: list, failures: list) -> dict:
    stats = {}
    for key in SUMMARY_METRICS:
        stats[key] = _stats(per_patient[key].to_numpy(float) if key in per_patient else np.zeros(0))
    inter = sum(r["overlap_pixels"] for r in slice_rows)
    truth = sum(r["lesion_pixels"] for r in slice_rows)
    predicted = sum(r["pred_pixels"] for r in slice_rows)
    return {
        "run": str(run.run_dir),
        "checkpoint": run.checkpoint,
        "model": run.config.get("model"),
        "evaluated_on": label,
        "patients": per_patient["patient"].tolist() if len(per_patient) else [],
        "failures": failures,
        "settings": asdict(config),
        "connectivity": config.connectivity,
        "detection_fraction": config.detection_fraction,
        "threshold": config.threshold,
        "per_patient": stats,
        "trust": trust_summary(per_patient),
        "slice_level": {
            "unit": "axial slices with ground-truth lesion, native grid (the backbone report's test unit)",
            "n_slices": len(slice_rows),
            "pooled_dice": 2 * inter / (truth + predicted) if truth + predicted else math.nan,
            "pooled_iou": inter / (truth + predicted - inter) if truth + predicted - inter else math.nan,
            "mean_dice": float(np.nanmean([r["dice"] for r in slice_rows])) if slice_rows else math.nan,
        },
        "mslesion_version": __version__,
    }


def _write_csv(path: Path, frame) -> None:
    save_text(path, frame.to_csv(index=False, lineterminator="\n", float_format="%.6g"))
