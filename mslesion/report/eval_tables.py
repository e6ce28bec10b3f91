"""Report tables of evaluations (``eval_<part>/`` folders): test IoU, per patient, patient summary, lesion-wise,
the model comparison."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from mslesion.evaluate.summary import COLLAPSE_DICE
from mslesion.fileio import load_json
from mslesion.folders import RunFolder, read_history
from mslesion.report.tables import run_label

__all__ = ["cross_validation_table", "CV_COLUMNS", "test_iou_table", "per_patient_table", "patient_summary_table",
           "lesionwise_table", "model_comparison_table", "detection_rule", "encoder_comparison_table", "fine_tuning_table", "ablation_table"]  # fmt: skip


def _eval_summary(run: Path, eval_name: str) -> dict | None:
    path = run / eval_name / "summary.json"
    return load_json(path) if path.is_file() else None


def test_iou_table(runs: list[Path], eval_name: str = "eval_test") -> pd.DataFrame:
    """Table 6.3: test IoU. Slice-level (the backbone report's unit) and per-patient volume IoU/Dice, labelled."""
    rows = []
    for run in runs:
        s = _eval_summary(run, eval_name)
        if s is None:
            continue
        rows.append({"model": run_label(run), "slice_level_iou": s["slice_level"]["pooled_iou"],
                     "slice_level_dice": s["slice_level"]["pooled_dice"], "n_slices": s["slice_level"]["n_slices"],
                     "volume_iou_mean": s["per_patient"]["iou"]["mean"],
                     "volume_dice_mean": s["per_patient"]["dice"]["mean"], "patients": len(s["patients"])})  # fmt: skip
    return pd.DataFrame(rows)


def per_patient_table(runs: list[Path], eval_name: str = "eval_test") -> pd.DataFrame:
    """Every run's per-patient whole-volume metrics, one row per (model, patient)."""
    frames = []
    cols = ["patient", "dice", "iou", "sensitivity", "specificity", "ppv", "npv", "extra_fraction", "volume_true_ml",
            "volume_pred_ml", "abs_volume_diff_ml", "rel_volume_diff", "hd95_mm", "n_true_lesions", "tp_lesions",
            "fn_lesions", "fp_lesions", "lesion_tpr", "lesion_fpr", "lesion_f1"]  # fmt: skip
    for run in runs:
        path = run / eval_name / "per_patient.csv"
        if path.is_file():
            table = pd.read_csv(path, dtype={"patient": str})
            table = table[[c for c in cols if c in table]]
            table.insert(0, "model", run_label(run))
            frames.append(table)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def patient_summary_table(per_patient: pd.DataFrame) -> pd.DataFrame:
    """Mean ± standard deviation over patients per model ("n/a" counted, never averaged in)."""
    if per_patient.empty:
        return pd.DataFrame()
    keys = ["dice", "iou", "sensitivity", "ppv", "abs_volume_diff_ml", "hd95_mm", "lesion_tpr", "lesion_fpr", "lesion_f1"]
    rows = []
    for model, group in per_patient.groupby("model", sort=False):
        row = {"model": model, "patients": len(group)}
        dice = group["dice"].to_numpy(float)
        dice = dice[np.isfinite(dice)]
        if dice.size:
            q1, med, q3 = np.percentile(dice, [25, 50, 75])
            row["dice median [IQR]"] = f"{med:.3f} [{q1:.3f}-{q3:.3f}]"
        row[f"Dice < {COLLAPSE_DICE:g} (collapsed)"] = f"{int((dice < COLLAPSE_DICE).sum())}/{len(group)}"
        if {"volume_true_ml", "volume_pred_ml"} <= set(group):
            true, pred = group["volume_true_ml"].to_numpy(float), group["volume_pred_ml"].to_numpy(float)
            if np.isfinite(true).any():
                row["lesion mL true / predicted (mean)"] = f"{np.nanmean(true):.2f} / {np.nanmean(pred):.2f}"
        for key in keys:
            v = group[key].to_numpy(float)
            v = v[np.isfinite(v)]
            row[key] = f"{v.mean():.3f} ± {v.std():.3f}" if v.size else "n/a"
            if v.size < len(group):
                row[key] += f" ({len(group) - v.size} n/a)"
        rows.append(row)
    return pd.DataFrame(rows)


def detection_rule(fraction: float, short: bool = False) -> str:
    """In words, when a true lesion counts as detected for ``detection_fraction`` (see :mod:`mslesion.evaluate.lesions`).

    ``short``: the few words of a table cell ("any overlap", "at least 60% of its voxels").
    """
    fraction = float(fraction)
    # lesions.py: detected = overlap > 0 when the fraction is 0, else covered share >= fraction
    rule = "any overlap" if fraction == 0 else f"at least {fraction * 100:g}% of its voxels"
    if short:
        return rule
    if fraction == 0:
        return ("detection_fraction = 0 means a true lesion counts as detected when the prediction overlaps it "
                "by one voxel or more (any overlap)")  # fmt: skip
    return f"detection_fraction = {fraction:g} means a true lesion counts as detected when {rule} are predicted"


def lesionwise_table(runs: list[Path], eval_name: str = "eval_test") -> pd.DataFrame:
    """Røvang's (2021) lesion table per model: lesion counts summed over patients, by size bracket.

    ``detected_when`` follows ``detection_fraction`` and says its rule in words (:func:`detection_rule`).
    """
    rows = []
    for run in runs:
        path = run / eval_name / "lesions.csv"
        if not path.is_file():
            continue
        table = pd.read_csv(path, dtype={"patient": str})
        s = load_json(run / eval_name / "summary.json")
        for bracket, g in table.groupby("bracket", sort=False):
            n_true, tp, fn, fp = (int(g[c].sum()) for c in ("n_true_lesions", "tp_lesions", "fn_lesions", "fp_lesions"))
            n_pred = int(g["n_pred_lesions"].sum())
            rows.append({"model": run_label(run), "bracket": bracket, "n_true_lesions": n_true, "tp_lesions": tp,
                         "fn_lesions": fn, "fp_lesions": fp, "n_pred_lesions": n_pred,
                         "lesion_recall": tp / n_true if n_true else math.nan,
                         "lesion_precision": (n_pred - fp) / n_pred if n_pred else math.nan,
                         "connectivity": s["connectivity"], "detection_fraction": s["detection_fraction"],
                         "detected_when": detection_rule(s["detection_fraction"], short=True)})  # fmt: skip
    return pd.DataFrame(rows)


def model_comparison_table(runs: list[Path], eval_name: str = "eval_test") -> pd.DataFrame:
    """2D and 3D models side by side on one split: size, training speed, per-patient Dice and lesion F1."""
    rows = []
    for run in runs:
        cfg = RunFolder(run).config
        h = read_history(run)
        s = _eval_summary(run, eval_name)
        shape = cfg.get("input_shape") or cfg.get("patch")
        rows.append({"model": run_label(run), "registry": cfg["model"], "input": "x".join(map(str, shape or [])),
                     "total_params": cfg["params"]["total"],
                     "train_img_per_s": float(h.img_per_s.median()) if "img_per_s" in h else math.nan,
                     "best_val_dice": float(h.val_dice.max()),
                     "patient_dice_mean": s["per_patient"]["dice"]["mean"] if s else math.nan,
                     "lesion_f1_mean": s["per_patient"]["lesion_f1"]["mean"] if s else math.nan,
                     "test_patients": len(s["patients"]) if s else 0,
                     "dataset": Path(cfg["dataset"]).name})  # fmt: skip
    return pd.DataFrame(rows)


#: the columns of Rondinella et al. (2023) Table 2 we compute (their EF is our extra_fraction), then ours
CV_COLUMNS = ("dice", "sensitivity", "specificity", "iou", "extra_fraction", "ppv", "npv", "hd95_mm", "lesion_f1")


def cross_validation_table(cv_dir: str | Path) -> pd.DataFrame:
    """Out-of-fold test metrics per fold (mean over its test patients) and a last row of mean ± SD across folds.

    In the form of Rondinella et al. (2023), Table 2; ``cv_dir`` is a ``mslesion evaluate --cross-validation``
    folder. The last row's cells are text (``0.84 ± 0.03``); the fold rows keep their numbers.
    """
    from mslesion.evaluate.cross_validation import read_folds

    folds, summary = read_folds(cv_dir)
    columns = [c for c in CV_COLUMNS if c in folds]
    table = folds[["fold", "n_patients", *columns]].astype(object)
    stats = summary["across_folds"]
    mean_row = {"fold": "mean ± SD", "n_patients": int(folds.n_patients.sum()),
                **{c: f"{stats[c]['mean']:.4g} ± {stats[c]['std']:.2g}" for c in columns}}  # fmt: skip
    return pd.concat([table, pd.DataFrame([mean_row])], ignore_index=True)


def encoder_comparison_table(runs: list[Path], eval_name: str = "eval_test") -> pd.DataFrame:
    """The LGG encoder comparison (:mod:`mslesion.study.encoder_comparison`): per model its encoder, ImageNet
    weights, frozen blocks, size, the validation Dice and IoU of its best epoch, and, where evaluated, test
    Dice and IoU per patient (mean ± SD, and the slice-level pooled figures that project reported)."""
    rows = []
    for run in runs:
        cfg = RunFolder(run).config
        h = read_history(run)
        params = cfg.get("model_params", {})
        best = int(h.val_dice.idxmax())
        s = _eval_summary(run, eval_name)
        encoder = params.get("encoder", "trainable")

        def stat(metric: str, key: str) -> float:
            return s["per_patient"][metric][key] if s else math.nan

        rows.append({"model": run_label(run), "encoder": params.get("backbone", "none (scratch)"),
                     "weights": str(params.get("weights") or "none"),
                     "frozen_blocks": "all" if encoder == "frozen" else (0 if encoder == "trainable" else encoder),
                     "trainable_params": cfg["params"]["trainable"], "epochs": len(h), "best_epoch": best + 1,
                     "val_dice": float(h.val_dice.iloc[best]),
                     "val_iou": float(h.val_iou.iloc[best]) if "val_iou" in h else math.nan,
                     "test_dice_mean": stat("dice", "mean"), "test_dice_sd": stat("dice", "std"),
                     "test_iou_mean": stat("iou", "mean"), "test_iou_sd": stat("iou", "std"),
                     "slice_level_dice": s["slice_level"]["pooled_dice"] if s else math.nan,
                     "slice_level_iou": s["slice_level"]["pooled_iou"] if s else math.nan,
                     "test_patients": len(s["patients"]) if s else 0})  # fmt: skip
    return pd.DataFrame(rows)


def fine_tuning_table(runs: list[Path], eval_name: str = "eval_test") -> pd.DataFrame:
    """The pretrained Table 6.1 models frozen, retrained, fine-tuned and from scratch
    (:mod:`mslesion.study.fine_tuning`): epochs (a fine-tuned run's warm-up included), trainable parameters,
    best validation Dice and, where evaluated, per-patient test Dice (mean, SD) and lesion F1. Warm-up runs
    (tag ``<key>-warmup``) are left out."""
    rows = []
    for run in runs:
        cfg = RunFolder(run).config
        h = read_history(run)
        tag = str(cfg.get("tag", ""))
        key, _, mode = tag.rpartition("-")
        if mode == "warmup":  # counted in the fine-tuned run it started
            continue
        warmup = len(read_history(Path(cfg["init_from"]))) if cfg.get("init_from") else 0
        s = _eval_summary(run, eval_name)
        rows.append({"model": key or run_label(run), "mode": mode, "encoder": cfg["model_params"].get("encoder"),
                     "weights": str(cfg["model_params"].get("weights") or "none"),
                     "epochs": len(h) + warmup, "warmup_epochs": warmup,
                     "trainable_params": cfg["params"]["trainable"], "best_val_dice": float(h.val_dice.max()),
                     "test_dice_mean": s["per_patient"]["dice"]["mean"] if s else math.nan,
                     "test_dice_sd": s["per_patient"]["dice"]["std"] if s else math.nan,
                     "lesion_f1_mean": s["per_patient"]["lesion_f1"]["mean"] if s else math.nan,
                     "test_patients": len(s["patients"]) if s else 0})  # fmt: skip
    return pd.DataFrame(rows)


def ablation_table(cv_dirs: list[str | Path]) -> pd.DataFrame:
    """Rondinella et al. (2023) Table 5's form: one row per architecture (a ``mslesion evaluate --cross-validation``
    folder each, e.g. from :func:`mslesion.study.ablation.ablate_fc_densenet`), its test Dice on each fold (mean
    over the fold's patients), and mean ± SD across folds of Dice and lesion F1.

    The architecture is named from its runs' parameters: FC-DenseNet, + SA (squeeze-and-attention), + C-LSTM.
    """
    from mslesion.evaluate.cross_validation import read_folds

    rows = []
    for cv in map(Path, cv_dirs):
        folds, summary = read_folds(cv)
        cfg = RunFolder(folds.run.iloc[0]).config
        params = cfg.get("model_params", {})
        name = cfg["model"]
        if name == "native.fc_densenet":
            name = "FC-DenseNet" + (" + SA" if params.get("attention", True) else "") + (
                " + C-LSTM" if params.get("lstm", True) else "")
        stats = summary["across_folds"]
        row = {"architecture": name, "evaluation": cv.name}
        row.update({f"dice_fold{int(k)}": float(d) for k, d in zip(folds.fold, folds.dice)})
        row["dice_mean"], row["dice_sd"] = stats["dice"]["mean"], stats["dice"]["std"]
        if "lesion_f1" in stats:
            row["lesion_f1_mean"], row["lesion_f1_sd"] = stats["lesion_f1"]["mean"], stats["lesion_f1"]["std"]
        rows.append(row)
    return pd.DataFrame(rows)
