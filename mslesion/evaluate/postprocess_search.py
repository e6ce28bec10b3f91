"""Choose a run's post-processing on its validation patients (``mslesion postprocess RUN``).

Each validation patient's whole volume is predicted once; then every combination of threshold, minimum
component size and hole filling on the grid is scored, per patient, by Dice and lesion F1. The setting with
the best mean of the objective wins (ties: the one nearest a plain cut at 0.5), and is saved as the run's
``postprocess.json`` with the grid beside it (``postprocess_grid.csv``), so that predict and evaluate apply it.
The test patients are never looked at.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mslesion.evaluate.lesions import compute_lesion_metrics
from mslesion.evaluate.metrics import compute_dice
from mslesion.fileio import save_csv
from mslesion.folders import RunFolder
from mslesion.infer.postprocess import PostProcess, save_postprocess
from mslesion.paths import POSTPROCESS
from mslesion.paths import POSTPROCESS_GRID as GRID_FILE

__all__ = ["OBJECTIVES", "THRESHOLDS", "MIN_SIZES", "GRID_FILE", "choose_postprocess", "score_grid"]

OBJECTIVES = ("dice", "lesion_f1")
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
#: minimum component sizes tried: mm³ where the voxel size is known, else voxels
MIN_SIZES = (0.0, 3.0, 5.0, 10.0, 20.0, 50.0)


def score_grid(volumes: Sequence[tuple[np.ndarray, np.ndarray, tuple | None]], thresholds=THRESHOLDS,
               min_sizes=MIN_SIZES, fill_holes=(False, True), connectivity: int = 26):  # fmt: skip
    """Mean Dice and lesion F1 over ``volumes`` (``(probability, truth, spacing_zhw_mm)``) for each setting.

    Returns a DataFrame: threshold, min_size, fill_holes, dice, lesion_f1 (means over the patients where each
    is defined), one row per setting. Sizes are mm³ when every volume has a voxel size, else voxels.
    """
    import pandas as pd

    in_mm3 = all(spacing for _, _, spacing in volumes)
    rows = []
    for t, size, fill in itertools.product(thresholds, min_sizes, fill_holes):
        post = PostProcess(threshold=t, min_size_mm3=size if in_mm3 else 0.0,
                           min_size_voxels=0 if in_mm3 else int(size), fill_holes=fill, connectivity=connectivity)
        dice, f1 = [], []
        for prob, truth, spacing in volumes:
            mask = post.apply(prob, spacing)
            dice.append(compute_dice(truth, mask))
            f1.append(compute_lesion_metrics(truth, mask, connectivity)["lesion_f1"])
        with warnings.catch_warnings():  # a setting where no patient has a defined score: NaN, not a warning
            warnings.simplefilter("ignore", RuntimeWarning)
            rows.append({"threshold": t, "min_size": size, "size_unit": "mm3" if in_mm3 else "voxels",
                         "fill_holes": fill, "dice": float(np.nanmean(dice)), "lesion_f1": float(np.nanmean(f1))})
    return pd.DataFrame(rows)


def choose_postprocess(run_dir: str | Path, objective: str = "dice", *, thresholds=THRESHOLDS, min_sizes=MIN_SIZES,
                       fill_holes=(False, True), checkpoint: str = "model", batch_size: int = 16, tta: str = "none",
                       verbose: bool = True) -> PostProcess:  # fmt: skip
    """Pick the run's post-processing on the patients it validated on, save it in the run, and return it.

    Raises:
        ValueError: an unknown objective, a 3D run, or a run with no validation patients on record.
    """
    from mslesion.data.loading import load_case
    from mslesion.evaluate.config import EvalConfig
    from mslesion.evaluate.evaluation import cases_of
    from mslesion.infer.inference import open_run, predict_volume

    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, not {objective!r}")
    folder = RunFolder.open(run_dir)
    if folder.kind != "2d":
        raise ValueError(f"{folder.path}: choosing post-processing on validation patients is for 2D runs so far")
    val = [str(p) for p in folder.config.get("val_patients") or []]
    if not val:
        raise ValueError(f"{folder.path}: the run records no validation patients (config.json val_patients)")
    if folder.config.get("val_is_train"):
        warnings.warn(f"{folder.path}: the run validated on its training patients; the post-processing is chosen "
                      "on them and will look better than it is", stacklevel=2)  # fmt: skip
    run = open_run(folder.path, checkpoint)
    cases, rejected, _ = cases_of(run, EvalConfig(part="val", patients=val))
    volumes = []
    for case in cases:
        loaded = load_case(case, allow_empty_mask=True, source=run.prep.source())
        prob = predict_volume(run, loaded, batch_size, tta).astype(np.float16)  # halves what the grid holds
        volumes.append((prob, loaded.mask, loaded.spacing_zhw_mm))
        if verbose:
            print(f"  predicted validation patient {loaded.patient_id}")
    if not volumes:
        raise ValueError(f"{folder.path}: none of its validation patients could be read ({rejected})")
    grid = score_grid(volumes, thresholds, min_sizes, fill_holes, connectivity=26)
    plain = (grid.threshold - 0.5).abs() + grid.min_size / max(grid.min_size.max(), 1.0) + grid.fill_holes
    best = grid.assign(_plain=plain).sort_values([objective, "_plain"], ascending=[False, True]).iloc[0]
    baseline = grid[(grid.threshold == 0.5) & (grid.min_size == 0) & ~grid.fill_holes]
    in_mm3 = best.size_unit == "mm3"
    post = PostProcess(
        threshold=float(best.threshold), min_size_mm3=float(best.min_size) if in_mm3 else 0.0,
        min_size_voxels=0 if in_mm3 else int(best.min_size), fill_holes=bool(best.fill_holes),
        chosen_on={"patients": [c.patient_id for c in cases], "objective": objective,
                   "score": float(best[objective]),
                   "plain_cut_score": float(baseline[objective].iloc[0]) if len(baseline) else None,
                   "checkpoint": run.checkpoint, "tta": tta, "grid": GRID_FILE},
    )  # fmt: skip
    with folder.locked():
        save_csv(folder.path / GRID_FILE, grid)
        save_postprocess(folder.path, post)
    if verbose:
        plain_cut = post.chosen_on["plain_cut_score"]
        print(f"{folder.path / POSTPROCESS}: {post.describe()} (mean validation {objective} "
              f"{post.chosen_on['score']:.3f}" + (f"; plain cut at 0.5: {plain_cut:.3f})" if plain_cut is not None
                                                   else ")"))  # fmt: skip
    return post
