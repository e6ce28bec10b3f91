#!/usr/bin/env python
"""Lesion-slice extraction: mslesion vs. the backbone report's route, against nibabel's load floor.

For the same volumes (a synthetic cohort and, when present, Ljubljana patient 07)
it times, in one run, end to end with loading included:

* ``floor``   nibabel loading image and mask fully (no route can beat it);
* ``direct``  load, slice the lesion slices, one ``np.save`` (the naive lossless way);
* ``mslesion`` ``prepare_case`` with no normalisation and the native size, so its
  output can be compared to the voxels bit for bit;
* ``seed000`` the backbone report's figures 4.5-4.6: ``plt.savefig`` of every lesion slice and
  mask to PNG, read back with OpenCV, ``np.save`` per slice.

It prints median seconds over repeats, slices/s, ratios, and the maximum
intensity error of each route against direct slicing of the file's array.
Run: ``python benchmarks/bench_prep.py [--repeats 5] [--patients 10]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from mslesion.data.case import Case
from mslesion.data.cohort import discover_cases  # noqa: E402
from mslesion.data.prep import PrepConfig, prepare_case
from mslesion.data.reader import open_case  # noqa: E402
from mslesion.data.slicing import to_native_volume  # noqa: E402
from mslesion.data.synthetic import generate_cohort  # noqa: E402

LJUBLJANA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ms_ljubljana_patient07"


def _files(case: Case) -> tuple[Path, Path]:
    return case.image("flair"), case.mask("flair")


def route_floor(cases: list[Case], out: Path) -> int:
    for case in cases:
        for f in _files(case):
            np.asanyarray(nib.load(str(f)).dataobj)
    return 0


def route_direct(cases: list[Case], out: Path) -> int:
    n = 0
    for case in cases:
        img_f, mask_f = _files(case)
        img = np.asanyarray(nib.load(str(img_f)).dataobj)
        mask = np.asanyarray(nib.load(str(mask_f)).dataobj)
        keep = np.flatnonzero(mask.any(axis=(0, 1)))
        np.save(out / f"{case.patient_id}_image.npy", img[:, :, keep])
        np.save(out / f"{case.patient_id}_mask.npy", mask[:, :, keep])
        n += len(keep)
    return n


def mslesion_config(case: Case) -> PrepConfig:
    hdr = nib.load(str(case.image("flair"))).shape
    # native in-plane size of the canonical stack (both samples are axial in their 3rd axis)
    return PrepConfig(normalisation="none", size=(hdr[1], hdr[0]), fit="stretch")


def route_mslesion(cases: list[Case], out: Path, configs: dict) -> int:
    return sum(len(prepare_case(case, configs[case.patient_id], out)) for case in cases)


def route_seed000(cases: list[Case], out: Path) -> int:
    """The backbone report's figures 4.5 and 4.6, verbatim apart from paths."""
    n = 0
    for case in cases:
        img_f, mask_f = _files(case)
        image_data = nib.load(str(img_f)).get_fdata()
        mask_data = nib.load(str(mask_f)).get_fdata()
        folder = out / case.patient_id
        folder.mkdir(parents=True, exist_ok=True)
        for slice_idx in range(image_data.shape[2]):
            image_slice = image_data[:, :, slice_idx]
            mask_slice = mask_data[:, :, slice_idx]
            if np.any(mask_slice):
                for prefix, data in (("slice", image_slice), ("mask_slice", mask_slice)):
                    plt.imshow(data, cmap="gray")
                    plt.axis("off")
                    plt.savefig(folder / f"{prefix}_{slice_idx}.png", bbox_inches="tight", pad_inches=0)
                    plt.close()
                n += 1
        for png in sorted(folder.glob("*.png")):
            np.save(png.with_suffix(".npy"), np.array(cv2.imread(str(png))))
    return n


def error_mslesion(cases: list[Case], out: Path) -> float:
    worst = 0.0
    for case in cases:
        img = nib.load(str(case.image("flair"))).get_fdata(dtype=np.float32)
        saved, _, meta = open_case(out, case.patient_id, mmap=False)
        back = to_native_volume(saved, meta)
        k = meta["slice_indices"]
        # the canonical stack's axial index of these samples is the file's 3rd axis (LPS / LAS)
        worst = max(worst, float(np.abs(back[:, :, k] - img[:, :, k]).max()))
    return worst


def error_seed000(cases: list[Case], out: Path) -> tuple[float, tuple, tuple]:
    """Best-effort inverse of the PNG route: resize back, undo imshow's min-max scaling."""
    worst, shape_png, shape_native = 0.0, (), ()
    for case in cases:
        img = nib.load(str(case.image("flair"))).get_fdata()
        for npy in sorted((out / case.patient_id).glob("slice_*.npy")):
            k = int(npy.stem.rsplit("_", 1)[1])
            png = np.load(npy, allow_pickle=False)
            native = img[:, :, k]
            shape_png, shape_native = png.shape, native.shape
            back = cv2.resize(png[..., 0].astype(np.float32), native.shape[::-1], interpolation=cv2.INTER_AREA)
            back = native.min() + back / 255.0 * (native.max() - native.min())
            worst = max(worst, float(np.abs(back - native).max()))
    return worst, shape_png, shape_native


def time_route(fn, cases, repeats: int, **kwargs) -> tuple[float, int, Path]:
    times, n, last = [], 0, None
    for _ in range(repeats):
        out = Path(tempfile.mkdtemp(prefix="bench_prep_"))
        t0 = time.perf_counter()
        n = fn(cases, out, **kwargs)
        times.append(time.perf_counter() - t0)
        last = out
    return statistics.median(times), n, last


def bench(name: str, cases: list[Case], repeats: int, seed_repeats: int) -> None:
    configs = {c.patient_id: mslesion_config(c) for c in cases}
    t_floor, _, _ = time_route(route_floor, cases, repeats)
    t_direct, n_direct, _ = time_route(route_direct, cases, repeats)
    t_ms, n_ms, out_ms = time_route(route_mslesion, cases, repeats, configs=configs)
    t_seed, n_seed, out_seed = time_route(route_seed000, cases, seed_repeats)
    assert n_ms == n_direct == n_seed, (n_ms, n_direct, n_seed)
    err_ms = error_mslesion(cases, out_ms)
    err_seed, shape_png, shape_native = error_seed000(cases, out_seed)
    print(f"\n== {name}: {len(cases)} volume(s), {n_ms} lesion slices; median of {repeats} runs "
          f"({seed_repeats} for seed000) ==")  # fmt: skip
    print(f"{'route':<10} {'seconds':>8} {'slices/s':>9} {'x floor':>8} {'max |error|':>12}")
    for route, t, err in (("floor", t_floor, None), ("direct", t_direct, 0.0), ("mslesion", t_ms, err_ms),
                          ("seed000", t_seed, err_seed)):  # fmt: skip
        rate = f"{n_ms / t:9.1f}" if route != "floor" else f"{'-':>9}"
        print(f"{route:<10} {t:8.3f} {rate} {t / t_floor:8.2f} {'-' if err is None else f'{err:.4g}':>12}")
    print(f"speed-up mslesion vs seed000: {t_seed / t_ms:.1f}x (target >= 5x)")
    print(f"mslesion vs load floor: {t_ms / t_floor:.2f}x (target <= 1.5x)")
    print(f"mslesion exact: {err_ms == 0.0} (target: max error 0)")
    print(f"seed000 returns {shape_png} uint8 renderings of {shape_native} float slices")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed-repeats", type=int, default=3)
    p.add_argument("--patients", type=int, default=10)
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "synthetic"
        generate_cohort(raw, a.patients, seed=0)
        bench("synthetic cohort", discover_cases(raw).cases, a.repeats, a.seed_repeats)
    if LJUBLJANA.exists():
        bench("Ljubljana patient 07", discover_cases(LJUBLJANA).cases, a.repeats, a.seed_repeats)
    else:
        print(f"\n(Ljubljana sample not found at {LJUBLJANA}; skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
