import math
import warnings

import numpy as np
import pytest

from mslesion.evaluate.lesions import (
    BRACKETS,
    bracket_label,
    bracket_rows,
    compute_lesion_metrics,
    label_lesions,
    lesion_table,
)

NAN = float("nan")
SHAPE = (12, 20, 20)
EMPTY = np.zeros(SHAPE, bool)
# truth: lesion A (2x3x3 = 18 voxels, slices 1-2) and lesion B (4x2x2 = 16 voxels, slices 6-9)
TRUTH = EMPTY.copy()
TRUTH[1:3, 2:5, 2:5] = True
TRUTH[6:10, 12:14, 12:14] = True
# prediction: finds A (4 of its voxels), misses B, and adds a far blob C (2x2x2, no truth)
PRED = EMPTY.copy()
PRED[2, 3:5, 3:5] = True
PRED[9:11, 1:3, 15:17] = True


def _no_warnings(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args, **kwargs)


def _overall(result):
    return {k: v for k, v in result.items() if k != "brackets"}


def test_bracket_labels():
    assert [bracket_label(lo, hi) for lo, hi in BRACKETS] == ["[0, 10)", "[10, 400)", "[400, 1000)", "[1000, inf)"]
    assert BRACKETS[-1] == (1000, math.inf)


def test_connectivity_6_vs_26_on_diagonal_voxels():
    mask = EMPTY.copy()
    mask[3, 3, 3] = mask[4, 4, 4] = True  # corner-touching only
    assert label_lesions(mask, 6)[1] == 2
    assert label_lesions(mask, 18)[1] == 2
    assert label_lesions(mask, 26)[1] == 1
    assert label_lesions(mask)[1] == 1  # default: full connectivity
    edge = EMPTY.copy()
    edge[3, 3, 3] = edge[3, 4, 4] = True  # edge-touching
    assert [label_lesions(edge, c)[1] for c in (6, 18, 26)] == [2, 1, 1]
    assert compute_lesion_metrics(mask, mask, connectivity=6)["n_true_lesions"] == 2


def test_connectivity_in_2d_and_invalid_values():
    square = np.zeros((5, 5), np.uint8)
    square[1, 1] = square[2, 2] = 1
    assert (label_lesions(square, 4)[1], label_lesions(square, 8)[1], label_lesions(square)[1]) == (2, 1, 1)
    with pytest.raises(ValueError, match=r"allowed: \[4, 8\]"):
        label_lesions(square, 26)
    with pytest.raises(ValueError, match=r"allowed: \[6, 18, 26\]"):
        label_lesions(EMPTY, 8)


def test_two_lesions_one_found_and_a_false_positive():
    result = _no_warnings(compute_lesion_metrics, TRUTH, PRED.astype(np.uint8))
    assert _overall(result) == pytest.approx({
        "connectivity": 26, "detection_fraction": 0.0, "n_true_lesions": 2, "n_pred_lesions": 2,
        "tp_lesions": 1, "fn_lesions": 1, "fp_lesions": 1, "lesion_tpr": 0.5, "lesion_fpr": 0.5,
        "lesion_precision": 0.5, "lesion_f1": 0.5,
    })  # fmt: skip
    small, mid = result["brackets"][0], result["brackets"][1]
    # both true lesions are in [10, 400); the FP blob (8 voxels) and the TP prediction (4) in [0, 10)
    assert (mid["n_true_lesions"], mid["tp_lesions"], mid["fn_lesions"], mid["fp_lesions"]) == (2, 1, 1, 0)
    assert mid["lesion_recall"] == 0.5 and np.isnan(mid["lesion_precision"])
    assert mid["mean_voxels"] == 17.0 and mid["mean_depth_slices"] == 3.0
    assert mid["mean_recall"] == pytest.approx((4 / 18 + 0) / 2)
    assert (small["n_true_lesions"], small["n_pred_lesions"], small["fp_lesions"]) == (0, 2, 1)
    assert small["lesion_precision"] == 0.5
    assert np.isnan(small["lesion_recall"]) and np.isnan(small["mean_voxels"]) and np.isnan(small["mean_recall"])


def test_lesion_table_rows():
    rows = lesion_table(TRUTH, PRED)
    assert [(r["kind"], r["label"]) for r in rows] == [("true", 1), ("true", 2), ("pred", 1), ("pred", 2)]
    a, b, hit, blob = rows
    assert (a["voxels"], a["depth_slices"], a["overlap_voxels"], a["detected"]) == (18, 2, 4, True)
    assert a["recall"] == pytest.approx(4 / 18)
    assert (b["voxels"], b["depth_slices"], b["overlap_voxels"], b["recall"], b["detected"]) == (16, 4, 0, 0.0, False)
    assert (hit["voxels"], hit["depth_slices"], hit["recall"], hit["detected"]) == (4, 1, 1.0, True)
    assert (blob["voxels"], blob["overlap_voxels"], blob["detected"], blob["bracket"]) == (8, 0, False, "[0, 10)")
    assert a["bracket"] == "[10, 400)" and all(r["detection_fraction"] == 0.0 for r in rows)


def test_depth_slices_is_extent_along_axis_0():
    mask = EMPTY.copy()
    mask[2:9, 5, 5] = True  # a 7-slice column
    mask[2, 10:16, 10:16] = True  # a flat 36-voxel plaque on one slice
    rows = lesion_table(mask, EMPTY)
    assert sorted((r["voxels"], r["depth_slices"]) for r in rows) == [(7, 7), (36, 1)]


@pytest.mark.parametrize("covered, detected", [(5, False), (6, True), (7, True)])
def test_detection_fraction(covered, detected):
    truth, pred = EMPTY.copy(), EMPTY.copy()
    truth[4, 5, 0:10] = True  # a 10-voxel lesion
    pred[4, 5, 0:covered] = True
    strict = compute_lesion_metrics(truth, pred, detection_fraction=0.6)
    assert strict["tp_lesions"] == int(detected) and strict["detection_fraction"] == 0.6
    assert strict["fp_lesions"] == 0  # the prediction overlaps truth: never a FP, whatever the fraction
    assert compute_lesion_metrics(truth, pred)["tp_lesions"] == 1  # default: any overlap
    assert lesion_table(truth, pred, detection_fraction=0.6)[0]["detected"] is detected


def test_detection_fraction_is_validated():
    with pytest.raises(ValueError, match="detection_fraction"):
        compute_lesion_metrics(TRUTH, PRED, detection_fraction=60)


@pytest.mark.parametrize(
    "voxels, bracket",
    [(1, "[0, 10)"), (9, "[0, 10)"), (10, "[10, 400)"), (399, "[10, 400)"), (400, "[400, 1000)"),
     (999, "[400, 1000)"), (1000, "[1000, inf)")],
)  # fmt: skip
def test_bracket_edges(voxels, bracket):
    mask = np.zeros(2000, bool)
    mask[:voxels] = True
    mask = mask.reshape(20, 100)
    empty = np.zeros_like(mask)  # as truth: a missed lesion; as prediction: a lone FP
    result = compute_lesion_metrics(mask, empty)
    (row,) = [r for r in result["brackets"] if r["n_true_lesions"]]
    assert row["bracket"] == bracket and row["fn_lesions"] == 1 and row["mean_voxels"] == voxels
    assert lesion_table(mask, empty)[0]["bracket"] == bracket
    (pred_row,) = [r for r in compute_lesion_metrics(empty, mask)["brackets"] if r["fp_lesions"]]
    assert pred_row["bracket"] == bracket  # a FP is bracketed by its own size


def test_fp_bracketed_by_own_size_and_tp_by_truth_size():
    truth, pred = EMPTY.copy(), EMPTY.copy()
    truth[0:2, 0:3, 0:2] = True  # 12 voxels: [10, 400)
    pred[0, 0, 0:2] = True  # a 2-voxel hit
    result = compute_lesion_metrics(truth, pred)
    small, mid = result["brackets"][:2]
    assert (mid["tp_lesions"], mid["n_pred_lesions"]) == (1, 0)
    assert (small["n_pred_lesions"], small["fp_lesions"], small["lesion_precision"]) == (1, 0, 1.0)


@pytest.mark.parametrize(
    "y_true, y_pred, tpr, fpr, precision, f1, counts",
    [
        (EMPTY, EMPTY, NAN, NAN, NAN, NAN, (0, 0, 0, 0, 0)),
        (TRUTH, EMPTY, 0.0, NAN, NAN, 0.0, (2, 0, 0, 2, 0)),  # empty prediction
        (EMPTY, PRED, NAN, 1.0, 0.0, 0.0, (0, 2, 0, 0, 2)),  # empty truth
        (TRUTH, TRUTH, 1.0, 0.0, 1.0, 1.0, (2, 2, 2, 0, 0)),
    ],
)
def test_empty_mask_rules(y_true, y_pred, tpr, fpr, precision, f1, counts):
    out = _no_warnings(compute_lesion_metrics, y_true, y_pred)
    got = [out["lesion_tpr"], out["lesion_fpr"], out["lesion_precision"], out["lesion_f1"]]
    np.testing.assert_equal(got, [tpr, fpr, precision, f1])
    assert (out["n_true_lesions"], out["n_pred_lesions"], out["tp_lesions"], out["fn_lesions"],
            out["fp_lesions"]) == counts  # fmt: skip
    assert len(out["brackets"]) == len(BRACKETS)
    assert _no_warnings(lesion_table, y_true, y_pred) is not None


def test_f1_zero_when_nothing_found():
    far = np.roll(TRUTH, 10, axis=2)  # two predictions, neither touching truth
    out = compute_lesion_metrics(TRUTH, far & ~TRUTH)
    assert (out["lesion_tpr"], out["lesion_precision"], out["lesion_f1"]) == (0.0, 0.0, 0.0)


def test_bracket_rows_prepend_extra_columns():
    result = compute_lesion_metrics(TRUTH, PRED, detection_fraction=0.6)
    rows = bracket_rows(result, patient="case_014", fold=0)
    assert len(rows) == len(BRACKETS)
    assert list(rows[0])[:5] == ["patient", "fold", "connectivity", "detection_fraction", "bracket"]
    assert rows[1]["patient"] == "case_014" and rows[1]["detection_fraction"] == 0.6
    assert rows[1]["bracket"] == "[10, 400)" and rows[1]["tp_lesions"] == 0  # 4/18 < 0.6: A is missed now


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(12, 20, 20\).*\(12, 20, 19\)"):
        compute_lesion_metrics(TRUTH, PRED[..., :19])
    with pytest.raises(ValueError, match=r"\(12, 20, 20\).*\(12, 20, 19\)"):
        lesion_table(TRUTH, PRED[..., :19])
