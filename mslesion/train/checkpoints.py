"""The end of a run: batch-norm health, and the checkpoint that evaluate and predict use.

Two sets of weights come out of a fit: the best epoch's (``best.keras``, picked
by validation Dice during training, with the batch-norm statistics as trained)
and the last epoch's. Both get their batch-norm statistics re-estimated on
training batches (:func:`mslesion.train.batchnorm.recalibrate`) and are scored on the
validation slices in inference mode, that is, as they will be used. The better
one is written as ``model.keras``, the default checkpoint of ``mslesion
evaluate`` and ``mslesion predict``; ``final_eval.json`` records both scores and
the choice.

Each candidate's Dice in training mode (every batch normalised by its own
statistics, as during the fit) is measured beside it. A model whose
inference-mode Dice falls more than :data:`BN_GAP_TOLERANCE` below that depends
on batch statistics: what training reported is not what it will predict, which
is a loud warning in ``final_eval.json``, ``summary.txt``, the CLI output and the
report.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from mslesion.paths import CHOSEN

__all__ = ["BN_GAP_TOLERANCE", "CHOICE_FILE", "score_candidate", "choose", "bn_gap_warnings", "describe_choice"]

#: largest tolerated drop of validation Dice from training mode to inference mode
BN_GAP_TOLERANCE = 0.1
#: the chosen weights, as evaluate and predict load them by default
CHOICE_FILE = CHOSEN


def score_candidate(model, evaluate: Callable[[object], dict], training_mode_dice: Callable[[object], float],
                    recalibrate: Callable[[object], int] | None) -> dict:  # fmt: skip
    """Score ``model``'s current weights; recalibrates its BN statistics in place when ``recalibrate`` is given.

    Returns:
        ``inference_before_recalibration`` (metrics dict), ``training_mode_val_dice``,
        ``recalibration_batches`` (0 when not recalibrated), ``inference`` (metrics
        dict as the weights will be used) and ``bn_gap`` (training-mode minus
        inference-mode Dice).
    """
    before = evaluate(model)
    # training-mode calls move BN statistics: measure them before re-estimating
    reference = float(training_mode_dice(model))
    used = recalibrate(model) if recalibrate is not None else 0
    after = evaluate(model) if used else before
    return {
        "inference_before_recalibration": before,
        "training_mode_val_dice": reference,
        "recalibration_batches": int(used),
        "inference": after,
        "bn_gap": _gap(reference, after),
    }


def _gap(reference: float, inference: dict) -> float | None:
    value = inference.get("dice")
    if value is None or not (math.isfinite(reference) and math.isfinite(value)):
        return None
    return float(reference - value)


def choose(candidates: dict[str, dict]) -> str:
    """The candidate with the highest inference-mode validation Dice; ``final`` wins ties and unscored cases."""
    def key(name: str) -> tuple[float, bool]:
        value = candidates[name]["inference"].get("dice")
        return (value if value is not None and math.isfinite(value) else -math.inf, name == "final")

    return max(candidates, key=key)


def bn_gap_warnings(candidates: dict[str, dict], chosen: str, tolerance: float = BN_GAP_TOLERANCE) -> list[str]:
    """One line per problem of the chosen candidate: a training-to-inference drop above ``tolerance``."""
    c = candidates[chosen]
    gap = c.get("bn_gap")
    if gap is None or gap <= tolerance:
        return []
    return [f"WARNING: batch norm: the {chosen} weights reach validation Dice {c['inference']['dice']:.3f} in "
            f"inference mode but {c['training_mode_val_dice']:.3f} in training mode (drop {gap:.3f} > tolerance "
            f"{tolerance:.2f}): the model depends on batch statistics and predicts worse than training reported; "
            "train longer, with a larger batch, or with a BN-free/GroupNorm model"]  # fmt: skip


def describe_choice(candidates: dict[str, dict], chosen: str, val_is_train: bool) -> str:
    """One line: which weights ``model.keras`` holds, both scores, and on which patients they were chosen."""
    scores = ", ".join(f"{name} {c['inference'].get('dice', float('nan')):.3f}" for name, c in candidates.items())
    on = ("the training patients (no validation patients: val_fraction=0), so the choice says little about "
          "new patients") if val_is_train else "the validation patients"  # fmt: skip
    return f"{CHOICE_FILE} = {chosen} weights; validation Dice after recalibration: {scores}; chosen on {on}"
