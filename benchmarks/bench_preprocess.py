#!/usr/bin/env python
"""Preprocessing front end: seconds per volume of N4 bias-field correction and resampling, against loading and slicing.

On Ljubljana patient 07 (FLAIR, 182x218x182 at 1 mm, when ../shared/data is present) and on a synthetic
volume of the Muslim et al. shape (19 slices of 512x512), in one run: ``load`` (nibabel, the floor), ``slice``
(``slice_case`` without correction), ``slice+n4`` (with ``--bias-correction n4``), and ``n4`` alone at shrink
factors 4 (default) and 2, ``slice+resample`` (``--spacing``: 1 mm isotropic for the synthetic volume, 0.9 mm for
Ljubljana) and ``resample`` alone (image and mask). On Ljubljana also ``skull strip (morphology)`` (the brain
mask of ``--skull-strip morphology`` on the FLAIR) and ``register t1->flair`` (``--register rigid``: the T1 moved by a
known rigid transform, 3 degrees about z and 4 mm along x, registered back onto the FLAIR grid; how well is printed
as the normalised cross-correlation with the unmoved T1 inside the brain). Prints median seconds over repeats and
the ratio to plain slicing.
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
from mslesion.data.registration import register_to, to_sitk
from mslesion.data.resampling import plan_resampling
from mslesion.data.skull_strip import morphology_brain_mask
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


def _moved_t1(case):
    """FLAIR and T1 volumes of ``case``, and the T1 rotated 3 degrees about z (about the volume's centre) and shifted
    4 mm along x (its header's origin): ``(flair, t1, moved, moved_affine)`` in file voxel order."""
    import SimpleITK as sitk

    from mslesion.data.volumes import load_image

    flair, t1 = load_image(case.image("flair")), load_image(case.image("t1"))
    image = to_sitk(t1.data, t1.affine)
    centre = image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()])
    motion = sitk.Euler3DTransform(centre, 0.0, 0.0, float(np.radians(3.0)))
    moved = sitk.GetArrayFromImage(sitk.Resample(image, image, motion, sitk.sitkLinear, 0.0)).transpose(2, 1, 0)
    moved_affine = t1.affine.copy()
    moved_affine[0, 3] += 4.0
    return flair, t1, np.ascontiguousarray(moved), moved_affine


def _ncc(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    a, b = a[where] - a[where].mean(), b[where] - b[where].mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    a = parser.parse_args()
    print(f"{'volume':28s} {'step':24s} {'median s':>9s} {'x slice':>8s}")
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
        if name.startswith("Ljubljana"):
            rows["skull strip (morphology)"] = _median(lambda: morphology_brain_mask(volume, spacing), a.repeats)
            flair, t1, moved, moved_affine = _moved_t1(discover_cases(LJUBLJANA).cases[0])
            rows["register t1->flair"] = _median(lambda: register_to(flair.data, flair.affine, moved, moved_affine),
                                                 a.repeats)  # fmt: skip
            back = register_to(flair.data, flair.affine, moved, moved_affine)
            brain = t1.data != 0
            print(f"{name:28s} T1 moved 3 deg + 4 mm: NCC with the unmoved T1 {_ncc(moved, t1.data, brain):.3f} "
                  f"before, {_ncc(back.data, t1.data, brain):.3f} after registration "
                  f"(Mattes MI {back.metric:.3f}, {back.iterations} iterations at full resolution)")  # fmt: skip
        print(f"{name:28s} resampled to {'x'.join(map(str, plan.target_zhw))} "
              f"({'x'.join(f'{s:.3g}' for s in plan.target_spacing_mm)} mm)")
        for step, seconds in rows.items():
            print(f"{name:28s} {step:24s} {seconds:9.2f} {seconds / rows['slice']:8.2f}")


if __name__ == "__main__":
    main()
