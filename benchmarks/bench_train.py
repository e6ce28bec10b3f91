#!/usr/bin/env python
"""Training throughput of registry models vs. what the input pipeline alone delivers.

On a synthetic cohort prepared at 256x256 with 3 adjacent slices as channels
(2.5D), it measures in one run:

* the input pipeline alone (``mslesion.train.datasets.make_dataset``, batch 8,
  shuffled, with and without paired augmentation), for both batch sources
  (``generator``: Python gather from memmaps; ``graph``: ``tf.gather`` from host
  memory, what ``train`` uses on a GPU/TPU): images/s, median of rounds;
* for each model: training images/s (``train_on_batch`` on batches of 8,
  after warm-up steps, median over steps), including the native Keras 3
  models of Rondinella et al. (2023) and Røvang (2021);
* the 3D R2 attention U-Net of the 3DR2AUNet paper (2024) on 64^3 patches, batch 2, at small and
  default widths: patches/s (``--no-3d`` skips it).

and prints the ratio pipeline / fastest model (target: >= 5x, i.e. the
pipeline never starves the model). ``--jit`` times each model a second time
with XLA (``jit_compile=True``, ``mslesion train --jit-compile``) and prints the
ratio XLA / plain, both measured in the same run. ``--augment-step`` times each
model again with the paired augmentation inside its train step (where ``train``
puts it on a GPU) and prints augmented / plain. Run: ``python
benchmarks/bench_train.py [--models sm.unet:mobilenetv2 kuc.unet:VGG16 ...]
[--steps 5] [--jit] [--augment-step]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# native.fc_densenet is left out of the default run: at 256x256x3 with table 1's widths one CPU step of 8
# images takes minutes; time it at its paper size with `--models native.fc_densenet --size 160`.
DEFAULT_MODELS = ["sm.unet:mobilenetv2", "sm.unet:vgg16", "kuc.unet:VGG16", "native.att_unet_pyramid"]
#: 3D models (the 3DR2AUNet paper, 2024): registry name -> widths, timed on 64^3 patches (patches/s).
DEFAULT_3D = {"native.r2_att_unet_3d (small)": {"filters": [4, 8, 16, 32]}, "native.r2_att_unet_3d": {}}


def pipeline_rate(slices, batch: int, augment: bool, batches: int, source: str = "generator") -> float:
    from mslesion.train.datasets import Augmentation, make_dataset

    ds = make_dataset(slices, batch, seed=0, augment=Augmentation() if augment else None, source=source).repeat()
    it = iter(ds)
    for _ in range(3):  # warm-up: tracing, first reads
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        x, _ = next(it)
    _ = x.numpy()
    return batches * batch / (time.perf_counter() - t0)


def model_rate(spec: str, x: np.ndarray, y: np.ndarray, warmup: int, steps: int,
               params: dict | None = None, jit_compile: bool = False,
               augment_in_step: bool = False) -> tuple[float, int]:  # fmt: skip
    import keras

    from mslesion.models import build_model, count_params
    from mslesion.train.augmentation import Augmentation, augment_in_train_step

    name, _, backbone = spec.partition(":")
    params = dict(params or {})
    if backbone:
        params["backbone"] = backbone
        if name.startswith("kuc."):
            params["encoder"] = "frozen"  # the backbone report's table 6.1: frozen VGG16 encoder
    model = build_model(name, input_shape=x.shape[1:], **params)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", jit_compile=jit_compile)
    if augment_in_step:
        augment_in_train_step(model, Augmentation(), seed=0)
    for _ in range(warmup):
        model.train_on_batch(x, y)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - t0)
    n_params = count_params(model)["total"]
    keras.backend.clear_session()
    return len(x) / statistics.median(times), n_params


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="registry name[:backbone]")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--pipeline-batches", type=int, default=50)
    p.add_argument("--pipeline-rounds", type=int, default=3, help="timings per pipeline variant (median)")
    p.add_argument("--no-3d", action="store_true", help="skip the 3D patch model")
    p.add_argument("--jit", action="store_true", help="also time each model XLA-compiled (jit_compile=True)")
    p.add_argument("--augment-step", action="store_true",
                   help="also time each model with the paired augmentation inside its train step (augment_on=device)")
    a = p.parse_args(argv)
    from mslesion.env.quiet_import import import_tensorflow

    import_tensorflow()  # without its start-up lines, as the CLI

    from mslesion.data.prep import PrepConfig, prepare_dataset
    from mslesion.data.reader import read_manifest
    from mslesion.data.synthetic import generate_cohort
    from mslesion.train.datasets import load_slice_set

    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "raw", Path(tmp) / "slices"
        generate_cohort(raw, 10, seed=0)
        prepare_dataset(raw, out, PrepConfig(size=(a.size, a.size), context=3, selection="brain"), progress=False)
        slices = load_slice_set(out, sorted(set(read_manifest(out).patient)))
        print(f"data: {len(slices)} slices of {slices.slice_shape}, batch {a.batch}")
        # both sources, interleaved over rounds so that machine noise hits them alike; medians
        rounds = {(src, aug): [] for src in ("generator", "graph") for aug in (False, True)}
        for _ in range(a.pipeline_rounds):
            for (src, aug), got in rounds.items():
                got.append(pipeline_rate(slices, a.batch, aug, a.pipeline_batches, src))
        med = {key: statistics.median(v) for key, v in rounds.items()}
        for src in ("generator", "graph"):
            print(f"input pipeline alone ({src:<9}): {med[src, False]:8.1f} img/s plain, "
                  f"{med[src, True]:8.1f} img/s with augmentation (median of {a.pipeline_rounds})")
        print(f"graph / generator: {med['graph', False] / med['generator', False]:.2f}x plain, "
              f"{med['graph', True] / med['generator', True]:.2f}x augmented")
        plain, augmented = med["generator", False], med["generator", True]
        x, y = slices.gather(np.arange(a.batch))
        rates = {}
        for spec in a.models:
            rate, n_params = model_rate(spec, x, y, a.warmup, a.steps)
            rates[spec] = rate
            print(f"train {spec:<24} {rate:8.2f} img/s  ({n_params:,} params, median of {a.steps} steps)")
            if a.jit:
                try:
                    jit_rate, _ = model_rate(spec, x, y, a.warmup, a.steps, jit_compile=True)
                    print(f"  XLA {spec:<22} {jit_rate:8.2f} img/s  XLA / plain {jit_rate / rate:.2f}x")
                except Exception as exc:  # noqa: BLE001 - some layers do not compile; say so and go on
                    print(f"  XLA {spec:<22} does not compile: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
            if a.augment_step:
                aug_rate, _ = model_rate(spec, x, y, a.warmup, a.steps, augment_in_step=True)
                print(f"  augmentation in the step {aug_rate:8.2f} img/s  augmented / plain {aug_rate / rate:.2f}x")
    fastest = max(rates.values())
    print(f"pipeline / fastest model: {plain / fastest:.1f}x plain, {augmented / fastest:.1f}x augmented (target >= 5x)")
    if not a.no_3d:
        rng = np.random.default_rng(0)
        x3 = rng.normal(size=(2, 64, 64, 64, 1)).astype(np.float32)
        y3 = (rng.random((2, 64, 64, 64, 1)) > 0.99).astype(np.float32)
        for label, params in DEFAULT_3D.items():
            rate, n_params = model_rate(label.split(" ")[0], x3, y3, a.warmup, a.steps, params)
            print(f"train {label:<32} {rate:8.2f} patches/s of 64^3  ({n_params:,} params, median of {a.steps} steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
