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

from mslesion.fileio import load_json
from mslesion.folders import RunFolder, read_history
from mslesion.paths import BEST, FINAL, FINAL_EVAL, HISTORY, RUN_CONFIG
from mslesion.train.history import epoch_study

__all__ = ["find_runs", "find_tunings", "run_label", "parameters_table", "dice_table", "accuracy_loss_table",
           "backbone_table", "lr_search_table", "epoch_study_table", "checkpoint_table", "bn_warnings", "LEARNED_DICE",
           "DID_NOT_LEARN", "DID_NOT_LEARN_RULE", "did_not_learn", "unlearned_models", "flag_unlearned"]  # fmt: skip


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

    cfg = RunFolder(run).config
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
        cfg = RunFolder(run).config
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


def accuracy_loss_table(runs: list[Path]) -> pd.DataFrame:
    """Appendix I table 1: training and validation accuracy and loss at the last epoch."""
    rows = []
    for run in runs:
        f = _final(run)
        rows.append({"model": run_label(run), "train_accuracy": float(f.accuracy), "val_accuracy": float(f.val_accuracy),
                     "train_loss": float(f.loss), "val_loss": float(f.val_loss),
                     "loss": RunFolder(run).config["loss"]})  # fmt: skip
    return pd.DataFrame(rows)


def backbone_table(runs: list[Path]) -> pd.DataFrame:
    """Backbone comparison (the backbone report's s. 5.1, the LGG encoder comparison): size, training speed and validation Dice per encoder."""
    rows = []
    for run in runs:
        cfg = RunFolder(run).config
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
        cfg = RunFolder(t).config
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
