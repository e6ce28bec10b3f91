import numpy as np
import pytest

from mslesion.evaluate.metrics import (
    Confusion,
    compute_accuracy,
    compute_all,
    compute_dice,
    compute_extra_fraction,
    compute_fbeta,
    compute_iou,
    compute_npv,
    compute_ppv,
    compute_sensitivity,
    compute_specificity,
    confusion,
)

NAN = float("nan")
EMPTY = np.zeros((4, 4), bool)
DOT = EMPTY.copy()
DOT[1, 1] = True
FULL = np.ones((4, 4), bool)
# truth: 4 pixels, prediction: 3 pixels, overlap 2 -> TP 2, FP 1, FN 2, TN 11
TRUTH = np.zeros((4, 4), bool)
TRUTH[0, :4] = True
PRED = np.zeros((4, 4), bool)
PRED[0, 2:4] = True
PRED[3, 3] = True


def test_confusion_counts():
    assert confusion(TRUTH, PRED) == Confusion(tp=2, fp=1, fn=2, tn=11)
    assert confusion(TRUTH.astype(np.uint8), PRED.astype(np.float32)) == Confusion(2, 1, 2, 11)
    with pytest.raises(ValueError, match="differs"):
        confusion(TRUTH, PRED[:3])


@pytest.mark.parametrize(
    "fn, expected",
    [
        (compute_dice, 4 / 7),
        (compute_iou, 2 / 5),
        (compute_accuracy, 13 / 16),
        (compute_sensitivity, 2 / 4),
        (compute_specificity, 11 / 12),
        (compute_ppv, 2 / 3),
        (compute_npv, 11 / 13),
        (compute_extra_fraction, 1 / 13),
    ],
)
def test_hand_computed_values(fn, expected):
    assert fn(TRUTH, PRED) == pytest.approx(expected)
    assert fn(confusion(TRUTH, PRED)) == pytest.approx(expected)


def test_fbeta_weighs_recall_and_reduces_to_dice():
    assert compute_fbeta(TRUTH, PRED, beta=1) == pytest.approx(compute_dice(TRUTH, PRED))
    assert compute_fbeta(TRUTH, PRED, beta=3) == pytest.approx(10 * 2 / (10 * 2 + 1 + 9 * 2))
    # a prediction that misses lesion (low recall) scores lower on F3 than on F1
    assert compute_fbeta(TRUTH, PRED, beta=3) < compute_fbeta(TRUTH, PRED, beta=1)


@pytest.mark.parametrize(
    "y_true, y_pred, dice, sens, ppv, spec, ef",
    [
        (EMPTY, EMPTY, NAN, NAN, NAN, 1.0, 0.0),  # correctly empty slice: undefined overlap, no error
        (DOT, EMPTY, 0.0, 0.0, NAN, 1.0, 0.0),  # missed lesion
        (EMPTY, DOT, 0.0, NAN, 0.0, 15 / 16, 1 / 15),  # false alarm
        (DOT, DOT, 1.0, 1.0, 1.0, 1.0, 0.0),
        (FULL, FULL, 1.0, 1.0, 1.0, NAN, NAN),  # no negatives at all
    ],
)
def test_empty_mask_cases(y_true, y_pred, dice, sens, ppv, spec, ef):
    got = [compute_dice(y_true, y_pred), compute_iou(y_true, y_pred), compute_sensitivity(y_true, y_pred),
           compute_ppv(y_true, y_pred)]  # fmt: skip
    np.testing.assert_equal(got, [dice, dice, sens, ppv])  # IoU is 0/1/nan exactly where Dice is
    assert compute_specificity(y_true, y_pred) == pytest.approx(spec, nan_ok=True)
    assert compute_extra_fraction(y_true, y_pred) == pytest.approx(ef, nan_ok=True)


def test_compute_all_keys_and_counts():
    out = compute_all(TRUTH, PRED)
    assert out["f3"] == pytest.approx(compute_fbeta(TRUTH, PRED, beta=3))
    assert (out["tp"], out["fp"], out["fn"], out["tn"]) == (2, 1, 2, 11)
    assert set(out) >= {"dice", "iou", "accuracy", "sensitivity", "specificity", "ppv", "npv", "extra_fraction"}
    assert all(isinstance(v, (int, float)) for v in out.values())
