"""Our Dice, HD95 and lesion counts against the anchors: MONAI's metrics and a plain scipy reference.

Where the conventions differ (HD95's surface: 26- vs 6-neighbour erosion; empty masks) the test shows that the
one difference accounts for everything: with MONAI's surface our HD95 is MONAI's to float precision.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage

from mslesion.evaluate.lesions import compute_lesion_metrics
from mslesion.evaluate.metrics import compute_dice
from mslesion.evaluate.volume_metrics import compute_hd95_mm

monai_metrics = pytest.importorskip("monai.metrics", reason="MONAI is a test extra (requirements-dev.txt)")
torch = pytest.importorskip("torch")

SPACINGS = [(1.0, 1.0, 1.0), (3.0, 0.9, 0.9), (5.0, 1.8, 1.8)]


def _pairs(n: int = 12, shape=(12, 28, 28)):
    rng = np.random.default_rng(42)
    for _ in range(n):
        truth = ndimage.binary_dilation(rng.random(shape) > 0.996, iterations=int(rng.integers(1, 3)))
        pred = ndimage.binary_dilation(rng.random(shape) > 0.997, iterations=2) | (truth & (rng.random(shape) > 0.3))
        yield truth, pred


def _tensor(a: np.ndarray):
    return torch.tensor(np.asarray(a, np.float32)[None, None])


def _monai_hd95(truth, pred, spacing) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(monai_metrics.compute_hausdorff_distance(_tensor(pred), _tensor(truth), include_background=True,
                                                               percentile=95, spacing=spacing).item())  # fmt: skip


def test_dice_is_monais_including_the_empty_cases():
    metric = monai_metrics.DiceMetric(include_background=True, reduction="none")
    for truth, pred in _pairs():
        assert compute_dice(truth, pred) == pytest.approx(metric(_tensor(pred), _tensor(truth)).item(), rel=1e-6)
    empty, one = np.zeros((4, 8, 8), bool), np.zeros((4, 8, 8), bool)
    one[2, 3, 3] = True
    assert compute_dice(one, empty) == metric(_tensor(empty), _tensor(one)).item() == 0.0
    assert np.isnan(compute_dice(empty, empty)) and np.isnan(metric(_tensor(empty), _tensor(empty)).item())


@pytest.mark.parametrize("spacing", SPACINGS, ids=["iso", "aniso3", "aniso5"])
def test_hd95_with_monais_surface_is_monais_and_ours_differs_by_under_a_voxel(spacing):
    gaps = []
    for truth, pred in _pairs():
        want = _monai_hd95(truth, pred, spacing)
        assert compute_hd95_mm(truth, pred, spacing, surface="face") == pytest.approx(want, rel=1e-5, abs=1e-4)
        gaps.append(abs(compute_hd95_mm(truth, pred, spacing) - want))
    # the thicker 26-neighbour surface moves the 95th percentile by less than the largest voxel edge
    assert max(gaps) < max(spacing) and np.median(gaps) < 0.5 * max(spacing)
    print(f"spacing {spacing}: |ours - MONAI| median {np.median(gaps):.3f} mm, max {max(gaps):.3f} mm")


def test_hd95_edge_cases():
    a, b = np.zeros((6, 10, 10), bool), np.zeros((6, 10, 10), bool)
    a[1, 2, 2], b[4, 6, 2] = True, True  # single voxels: the distance between their centres
    spacing = (3.0, 0.5, 0.5)
    assert compute_hd95_mm(a, b, spacing) == pytest.approx(np.hypot(3 * 3.0, 4 * 0.5))
    assert compute_hd95_mm(a, b, spacing) == pytest.approx(_monai_hd95(a, b, spacing), rel=1e-5)
    assert np.isnan(compute_hd95_mm(a, np.zeros_like(a), spacing))  # MONAI: inf or nan with a warning
    assert compute_hd95_mm(a, a, spacing) == 0.0 == _monai_hd95(a, a, spacing)


@pytest.mark.parametrize("connectivity", [6, 26])
def test_lesion_counts_match_a_scipy_reference(connectivity):
    structure = ndimage.generate_binary_structure(3, 1 if connectivity == 6 else 3)
    for truth, pred in _pairs():
        got = compute_lesion_metrics(truth, pred, connectivity)
        t_labels, n_true = ndimage.label(truth, structure)
        p_labels, n_pred = ndimage.label(pred, structure)
        found = len(set(np.unique(t_labels[pred & truth])) - {0})
        false = n_pred - len(set(np.unique(p_labels[pred & truth])) - {0})
        assert (got["n_true_lesions"], got["n_pred_lesions"], got["tp_lesions"], got["fp_lesions"]) == (
            n_true, n_pred, found, false)  # fmt: skip
