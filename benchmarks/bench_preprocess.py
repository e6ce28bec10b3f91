#!/usr/bin/env python
"""Preprocessing front end: seconds per volume of N4 bias-field correction and resampling, against loading and slicing.

On Ljubljana patient 07 (FLAIR, 182x218x182 at 1 mm, when ../shared/data is present) and on a synthetic
volume of the Muslim et al. shape (19 slices of 512x512), in one run: ``load`` (nibabel, the floor), ``slice``
(``slice_case`` without correction), ``slice+n4`` (with ``--bias-correction n4``), and ``n4`` alone at shrink
factors 4 (default) and 2, ``slice+resample`` (``--spacing``: 1 mm isotropic for the synthetic volume, 0.9 mm for
Ljubljana) and ``resample`` alone (image and mask). Prints median seconds over repeats and the ratio to plain
slicing.
Run: ``python benchmarks/bench_preprocess.py [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from mslesion.data.bias_field import n4_correct
from mslesion.data.cohort import discover_cases
from mslesion.data.loading import load_case
from mslesion.data.resampling import plan_resampling
from mslesion.data.slicing import SliceConfig, slice_case

LJUBLJANA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ms_ljubljana_patient07"


def _median(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _volumes() -> list[tuple[str, np.ndarray, tuple, callable]]:
    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[:19, :512, :512]
    head = ((y - 256) / 200) ** 2 + ((x - 256) / 170) ** 2 < 1
    raw = (head * (80 + 20 * rng.random((19, 512, 512))) * np.exp(0.3 * (x - 256) / 256)).astype(np.float32)
    out = [("synthetic 19x512x512", raw, (5.0, 0.45, 0.45), lambda: raw.copy(), (1.0, 1.0, 1.0))]
    if LJUBLJANA.is_dir():
        case = discover_cases(LJUBLJANA).cases[0]

        def load():
            return load_case(case, ("flair",))

        loaded = load()
        out.append(("Ljubljana 07 " + "x".join(map(str, loaded.stack.shape[:3])), loaded.stack[..., 0],
                    loaded.spacing_zhw_mm, load, (0.9, 0.9, 0.9)))  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    a = parser.parse_args()
    print(f"{'volume':28s} {'step':18s} {'median s':>9s} {'x slice':>8s}")
    for name, volume, spacing, load, target in _volumes():
        stack, mask = volume[..., None], np.zeros(volume.shape, np.uint8)
        plain = SliceConfig(selection="all")
        plan = plan_resampling(volume.shape, spacing, target)
        rows = {
            "load": _median(load, a.repeats),
            "slice": _median(lambda: slice_case(stack, mask, ["flair"], spacing, plain), a.repeats),
            "slice+n4": _median(lambda: slice_case(stack, mask, ["flair"], spacing,
                                                   SliceConfig(selection="all", bias_correction="n4")), a.repeats),
            "n4 (shrink 4)": _median(lambda: n4_correct(volume, spacing), a.repeats),
            "n4 (shrink 2)": _median(lambda: n4_correct(volume, spacing, shrink=2), a.repeats),
            "slice+resample": _median(lambda: slice_case(stack, mask, ["flair"], spacing,
                                                         SliceConfig(selection="all", spacing=target)), a.repeats),
            "resample": _median(lambda: (plan.image(stack), plan.mask(mask)), a.repeats),
        }  # fmt: skip
        print(f"{name:28s} resampled to {'x'.join(map(str, plan.target_zhw))} "
              f"({'x'.join(f'{s:.3g}' for s in plan.target_spacing_mm)} mm)")
        for step, seconds in rows.items():
            print(f"{name:28s} {step:18s} {seconds:9.2f} {seconds / rows['slice']:8.2f}")


if __name__ == "__main__":
    main()
