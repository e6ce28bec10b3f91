"""After the fit: batch-norm recalibration, the choice between the best and the last epoch by inference-mode
validation Dice (:mod:`mslesion.train.checkpoints`), ``final_eval.json`` and the verdict atop ``summary.txt``."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np

from mslesion.evaluate.metrics import Confusion, compute_dice
from mslesion.fileio import atomic_path, save_json, save_text
from mslesion.paths import BEST, FINAL, FINAL_EVAL, SUMMARY
from mslesion.train.config import TrainConfig
from mslesion.train.datasets import make_dataset
from mslesion.train.history import read_history
from mslesion.train.resume import crash, save_model

__all__ = ["recalibration_batches", "finish_run", "announce_choice"]


def finish_run(run: Path, model, config: TrainConfig, train_set, val_set, val_ds, batch: int, augment,
            val_is_train: bool, extra: dict | None = None) -> dict:  # fmt: skip
    """Score the final and the best epoch's weights as they will be used; write final.keras and model.keras.

    See :mod:`mslesion.train.checkpoints`. Returns what ``final_eval.json`` holds.
    """
    from mslesion.models import load_model
    from mslesion.train import batchnorm, checkpoints

    def evaluate(m) -> dict:
        return m.evaluate(val_ds, verbose=0, return_dict=True)

    def reference(m) -> float:
        return _training_mode_dice(m, val_set, batch, config.threshold, seed=config.seed + 2)

    def recalibrate(m) -> int:
        return batchnorm.recalibrate(m, _recalibration_batches(train_set, batch, config, augment),
                                     max_batches=recalibration_batches(config, len(train_set), batch))  # fmt: skip

    recal = recalibrate if config.recalibrate_bn else None
    candidates = {"final": checkpoints.score_candidate(model, evaluate, reference, recal)}
    crash("after_recalibration")
    save_model(model, run / FINAL, "final_model")
    best_epoch, last_epoch = _best_and_last_epoch(run)
    if best_epoch is not None and best_epoch != last_epoch and (run / BEST).is_file():
        model.set_weights(load_model(run / BEST, compile=False).get_weights())
        candidates["best"] = checkpoints.score_candidate(model, evaluate, reference, recal)
    chosen = checkpoints.choose(candidates)
    if chosen == "best":
        save_model(model, run / checkpoints.CHOICE_FILE, "chosen_model")
    else:
        with atomic_path(run / checkpoints.CHOICE_FILE) as tmp:
            shutil.copyfile(run / FINAL, tmp)
            crash("chosen_model")
    for name, epoch in (("final", last_epoch), ("best", best_epoch)):
        if name in candidates:
            candidates[name]["epoch"] = epoch
    warnings_ = checkpoints.bn_gap_warnings(candidates, chosen)
    final_eval = {
        **candidates["final"],  # the keys of earlier versions: the final weights' scores
        "candidates": candidates,
        "chosen": chosen,
        "chosen_on": "training patients" if val_is_train else "validation patients",
        "choice": checkpoints.describe_choice(candidates, chosen, val_is_train),
        "bn_gap_tolerance": checkpoints.BN_GAP_TOLERANCE,
        "warnings": warnings_,
        **(extra or {}),
    }
    save_json(run / FINAL_EVAL, final_eval)
    _summary_header(run, final_eval)
    return final_eval


def announce_choice(final_eval: dict | None) -> None:
    """Print the checkpoint choice; BN warnings go to stderr as well, where they cannot be missed."""
    if not final_eval:
        return
    print(final_eval["choice"])
    for line in final_eval.get("warnings", []):
        warnings.warn(line, stacklevel=3)


def _summary_header(run: Path, final_eval: dict) -> None:
    """Put the end-of-run verdict (warnings first) at the top of summary.txt, above the model summary."""
    path = run / SUMMARY
    body = path.read_text(encoding="utf-8") if path.is_file() else ""
    body = body.split(_SUMMARY_RULE, 1)[-1].lstrip("\n")
    head = [*final_eval["warnings"], final_eval["choice"]]
    for name, c in final_eval["candidates"].items():
        head.append(f"{name} (epoch {c.get('epoch')}): val Dice {c['training_mode_val_dice']:.3f} training mode, "
                    f"{c['inference_before_recalibration'].get('dice', float('nan')):.3f} inference mode as trained, "
                    f"{c['inference'].get('dice', float('nan')):.3f} after recalibration "
                    f"({c['recalibration_batches']} batches)")  # fmt: skip
    save_text(path, "\n".join(head) + "\n" + _SUMMARY_RULE + "\n" + body)


_SUMMARY_RULE = "-" * 72


def _best_and_last_epoch(run: Path) -> tuple[int | None, int | None]:
    """0-based epochs of best.keras (the first with the highest finite val_dice) and of the last row."""
    try:
        history = read_history(run)
    except (OSError, ValueError):
        return None, None
    if not len(history):
        return None, None
    last = int(history.epoch.iloc[-1])
    if "val_dice" not in history or not np.isfinite(history.val_dice).any():
        return None, last
    return int(history.epoch[history.val_dice.fillna(-np.inf).idxmax()]), last


def recalibration_batches(config, n_slices: int, batch: int) -> int:
    """How many batches re-estimate BN statistics: the config's, else one epoch of full batches (1 to 200).

    Measured on a real MS patient (Ljubljana patient 07, 114 slices at 128x128, sm Unet-MobileNetV2,
    batch 16, 30 epochs): 8 and 32 batches give the same inference-mode Dice (0.275 and 0.276), so one
    epoch is enough; the short last batch is left out (8 batches with it: 0.280).
    """
    if config.recalibration_batches:
        return int(config.recalibration_batches)
    return int(np.clip(n_slices // batch, 1, 200))


def _recalibration_batches(train_set, batch: int, config: TrainConfig, augment):
    """Batches drawn like training batches (shuffled, balanced and augmented as the run was), epoch after epoch.

    Full batches only when there are enough slices: a short last batch has noisy statistics.
    """
    ds = make_dataset(train_set, batch, seed=config.seed + 1, balance=config.balance, augment=augment,
                      drop_remainder=len(train_set) >= batch)  # fmt: skip
    return ds.repeat()


def _training_mode_dice(model, val_set, batch_size: int, threshold: float, seed: int = 0) -> float:
    """Pooled val Dice with BN in training mode (statistics of shuffled batches, as in the fit): BN health's reference."""
    tp = fp = fn = 0
    for x, y in make_dataset(val_set, batch_size, shuffle=True, seed=seed):
        pred = np.asarray(model(x, training=True)) > threshold
        truth = y.numpy() > 0.5
        tp += int((pred & truth).sum())
        fp += int((pred & ~truth).sum())
        fn += int((~pred & truth).sum())
    return compute_dice(Confusion(tp, fp, fn, 0))
