"""Run folders -> the report's tables as DataFrames (the backbone report's ch. 6 and appendix I, Røvang's (2021) ch. 8).

Every function reads what earlier stages wrote (``config.json``,
``history.csv``, ``tuning.csv``, ``eval_*/``) and returns a DataFrame whose
rows are sorted deterministically, so regenerating a report from the same runs
gives identical tables. Numbers are not rounded here; :mod:`mslesion.report.build`
formats them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from mslesion.evaluate.summary import COLLAPSE_DICE
from mslesion.fileio import load_json
from mslesion.paths import BEST, FINAL, FINAL_EVAL, HISTORY, RUN_CONFIG
from mslesion.train.history import epoch_study, read_history

__all__ = [
    "find_runs",
    "find_tunings",
    "run_label",
    "parameters_table",
    "dice_table",
    "test_iou_table",
    "accuracy_loss_table",
    "backbone_table",
    "lr_search_table",
    "epoch_study_table",
    "per_patient_table",
    "patient_summary_table",
    "lesionwise_table",
    "model_comparison_table",
    "checkpoint_table",
    "bn_warnings",
    "LEARNED_DICE",
    "DID_NOT_LEARN",
    "DID_NOT_LEARN_RULE",
    "did_not_learn",
    "unlearned_models",
    "flag_unlearned",
    "detection_rule",
]

#: A run whose validation Dice stays below this at every epoch "did not learn": its test numbers
#: describe an all-background (or noise) predictor, not the architecture, so the report says so.
LEARNED_DICE = 0.05
DID_NOT_LEARN = "did not learn"  # the ``note`` a flagged model's rows carry
DID_NOT_LEARN_RULE = f"did not learn: validation Dice below {LEARNED_DICE:g} at every epoch"


def find_runs(root: str | Path) -> list[Path]:
    """Finished training runs under ``root`` (folders with config.json, history.csv and a checkpoint)."""
    root = Path(root)
    found = [p.parent for p in root.rglob(HISTORY) if (p.parent / RUN_CONFIG).is_file()
             and ((p.parent / BEST).is_file() or (p.parent / FINAL).is_file())]  # fmt: skip
    return sorted(found)


def find_tunings(root: str | Path) -> list[Path]:
    """Learning-rate searches under ``root`` (folders with tuning.csv)."""
    return sorted(p.parent for p in Path(root).rglob("tuning.csv"))


def run_label(run: str | Path) -> str:
    """The name a run goes by in tables: Table 6.1's name for its report models, else its tag or model."""
    from mslesion.study.table_6_1 import REPORT_MODELS

    cfg = load_json(Path(run) / RUN_CONFIG)
    tag = cfg.get("tag") or "base"
    if tag in REPORT_MODELS:
        spec = REPORT_MODELS[tag]
        if spec.pretrained and not cfg.get("model_params", {}).get("weights"):
            return spec.display_name.replace("and ImageNet weights", "(no ImageNet weights)")
        return spec.display_name
    return cfg.get("model", "?") if tag == "base" else tag


def _mb(n: int) -> str:
    """Parameter memory as the backbone report printed it: float32 bytes in MB, or KB when small."""
    size = n * 4 / 2**20
    return f"{n:,} ({size:.2f} MB)" if size >= 1 else f"{n:,} ({n * 4 / 2**10:.2f} KB)"


def parameters_table(runs: list[Path]) -> pd.DataFrame:
    """Table 6.1: trainable, non-trainable and total parameters (with MB) of each run's model."""
    rows = []
    for run in runs:
        cfg = load_json(run / RUN_CONFIG)
        p = cfg["params"]
        rows.append({"model": run_label(run), "registry": cfg["model"], "input": "x".join(map(str, cfg["input_shape"])),
                     "trainable": _mb(p["trainable"]), "non_trainable": _mb(p["non_trainable"]),
                     "total": _mb(p["total"]), "total_params": p["total"]})  # fmt: skip
    return pd.DataFrame(rows)


def _final(run: Path) -> pd.Series:
    return read_history(run).iloc[-1]


def did_not_learn(history: pd.DataFrame, threshold: float = LEARNED_DICE) -> bool:
    """True when ``history`` has a ``val_dice`` column and it stayed below ``threshold`` at every epoch.

    A nan epoch never counts as learning; a history without ``val_dice`` is not judged (False).
    """
    if "val_dice" not in history or history.empty:
        return False
    values = pd.to_numeric(history["val_dice"], errors="coerce").to_numpy(float)
    return not bool((values >= threshold).any())


def unlearned_models(runs: list[Path]) -> list[str]:
    """Labels (:func:`run_label`) of the runs that :func:`did_not_learn`, in ``runs`` order."""
    return [run_label(run) for run in runs if did_not_learn(read_history(run))]


def flag_unlearned(table: pd.DataFrame, models) -> pd.DataFrame:
    """``table`` with a ``note`` column right after ``model``: :data:`DID_NOT_LEARN` for ``models``, else "".

    Returned unchanged when no row is one of ``models`` (a note column of blanks only adds noise),
    or the table has no ``model`` column.
    """
    if table.empty or "model" not in table or not table["model"].isin(list(models)).any():
        return table
    flagged = table["model"].isin(list(models))
    table = table.drop(columns="note", errors="ignore")
    table.insert(table.columns.get_loc("model") + 1, "note", np.where(flagged, DID_NOT_LEARN, ""))
    return table


def dice_table(runs: list[Path]) -> pd.DataFrame:
    """Table 6.2: training and validation Dice at the last epoch, and the best validation Dice.

    The ``note`` column says :data:`DID_NOT_LEARN` for a run whose validation Dice stayed below
    :data:`LEARNED_DICE` at every epoch (:func:`did_not_learn`), else is "".
    """
    rows = []
    for run in runs:
        h = read_history(run)
        best = int(h.val_dice.idxmax())
        rows.append({"model": run_label(run), "note": DID_NOT_LEARN if did_not_learn(h) else "", "epochs": len(h),
                     "train_dice": float(h.dice.iloc[-1]), "val_dice": float(h.val_dice.iloc[-1]),
                     "best_val_dice": float(h.val_dice.max()), "best_epoch": best + 1})  # fmt: skip
    return pd.DataFrame(rows)


def _final_eval(run: Path) -> dict | None:
    path = run / FINAL_EVAL
    return load_json(path) if path.is_file() else None


def checkpoint_table(runs: list[Path]) -> pd.DataFrame:
    """The weights evaluate/predict use, per run: validation Dice of best and final in training mode, in
    inference mode as trained and after BN recalibration, the choice, and the BN gap with its warning."""
    rows = []
    for run in runs:
        fe = _final_eval(run)
        if not fe or "candidates" not in fe:
            continue
        for name, c in fe["candidates"].items():
            rows.append({"model": run_label(run), "weights": name, "epoch": None if c.get("epoch") is None else
                         int(c["epoch"]) + 1, "chosen": name == fe["chosen"], "chosen_on": fe.get("chosen_on"),
                         "val_dice_training_mode": c["training_mode_val_dice"],
                         "val_dice_as_trained": c["inference_before_recalibration"].get("dice", math.nan),
                         "val_dice_recalibrated": c["inference"].get("dice", math.nan),
                         "bn_gap": math.nan if c.get("bn_gap") is None else c["bn_gap"],
                         "bn_warning": bool(fe.get("warnings")) and name == fe["chosen"]})  # fmt: skip
    return pd.DataFrame(rows)


def bn_warnings(runs: list[Path]) -> list[str]:
    """``"<run label>: <warning>"`` for each run whose chosen weights lose Dice in inference mode."""
    return [f"{run_label(run)}: {line}" for run in runs for line in (_final_eval(run) or {}).get("warnings", [])]


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


def accuracy_loss_table(runs: list[Path]) -> pd.DataFrame:
    """Appendix I table 1: training and validation accuracy and loss at the last epoch."""
    rows = []
    for run in runs:
        f = _final(run)
        rows.append({"model": run_label(run), "train_accuracy": float(f.accuracy), "val_accuracy": float(f.val_accuracy),
                     "train_loss": float(f.loss), "val_loss": float(f.val_loss),
                     "loss": load_json(run / RUN_CONFIG)["loss"]})  # fmt: skip
    return pd.DataFrame(rows)


def backbone_table(runs: list[Path]) -> pd.DataFrame:
    """Backbone comparison (the backbone report's s. 5.1, the LGG encoder comparison): size, training speed and validation Dice per encoder."""
    rows = []
    for run in runs:
        cfg = load_json(run / RUN_CONFIG)
        h = read_history(run)
        params = cfg.get("model_params", {})
        rows.append({"model": run_label(run), "registry": cfg["model"],
                     "backbone": params.get("backbone", "none (scratch)"),
                     "weights": str(params.get("weights") or params.get("encoder_weights") or "none"),
                     "total_params": cfg["params"]["total"], "trainable_params": cfg["params"]["trainable"],
                     "train_img_per_s": float(h.img_per_s.median()) if "img_per_s" in h else math.nan,
                     "best_val_dice": float(h.val_dice.max()), "best_epoch": int(h.val_dice.idxmax()) + 1,
                     "epochs": len(h)})  # fmt: skip
    return pd.DataFrame(rows).sort_values(["best_val_dice", "model"], ascending=[False, True], ignore_index=True)


def lr_search_table(tunings: list[Path]) -> pd.DataFrame:
    """Learning-rate search (the backbone report's s. 5.2.2): one row per trial, best first within each search."""
    frames = []
    for t in tunings:
        cfg = load_json(t / RUN_CONFIG)
        table = pd.read_csv(t / "tuning.csv", dtype={"trial": str})
        table.insert(0, "model", cfg["model"] if cfg.get("tag", "lr_search") == "lr_search" else cfg["tag"])
        table.insert(1, "tuner", cfg["tuner"])
        frames.append(table.sort_values(["best_val_dice", "trial"], ascending=[False, True]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def epoch_study_table(run: Path, every: int) -> pd.DataFrame:
    """The backbone report's s. 5.2.1: validation Dice after every ``every`` epochs of one long run."""
    table = pd.DataFrame(epoch_study(run, every))
    table.insert(0, "model", run_label(run))
    return table


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
        cfg = load_json(run / RUN_CONFIG)
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
