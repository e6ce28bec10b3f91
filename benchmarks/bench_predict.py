#!/usr/bin/env python
"""Whole-volume inference time on CPU: ``predict_volume`` against the network's own cost.

For one 182-slice volume (Ljubljana patient 07 when present, else a synthetic
volume of the same 182 x 218 x 182 grid at 1 mm) and an untrained registry
model (same cost as a trained one; default ``sm.unet`` with a MobileNetV2
encoder, ``weights=None``, input 256x256x1 as the default prep gives) it times
in one run, after one warm-up call of each, as medians over repeats:

* ``(a) network``   ``model.predict`` alone on the 182 model-grid slices, made
  beforehand by ``slice_case`` (the floor: the network's own cost);
* ``(b) volume``    the full ``mslesion.infer.inference.predict_volume``: slicing,
  normalisation and resizing, the network, mapping back to the native grid;
* ``(c) overhead``  (b) - (a), i.e. everything but the network; since that is
  a difference of two noisy figures, it is also timed on its own: the same
  ``predict_volume`` with the model replaced by a stub returning zeros;
* ``(d) load``      ``load_case`` of the NIfTI files (not part of (b)).

Each repeat is one round of (a), (b) and (b) at the other batch sizes of the
sweep (8, 16, 32; only in the first ``--sweep-repeats`` rounds), in an order
rotated every round, so drift and other work on the machine hit all of them
alike; the load average is printed before and after timing to flag a shared
CPU. It prints seconds per volume, slices/s and (b)/(a), the batch-size table,
and whether the target (< 10 s per volume for the MobileNetV2 U-Net on this
2-core CPU) is met.

Run: ``.venv/bin/python benchmarks/bench_predict.py [--repeats 5] [--batch-size 16]
[--model sm.unet] [--backbone mobilenetv2] [--size 256]``. A default run takes
about 3 minutes on the 2-core machine.

Last measured (2-core CPU, TF 2.21 / Keras 3.15, Ljubljana patient 07,
sm.unet + mobilenetv2, weights None, 256x256x1, batch 16, median of 5). The
machine was shared with other jobs in every run (load average 2-5), and the
network's time for the same work ranged 4.8-10.3 s between runs::

    quietest run (load ~1.9 at start):
    (a) network: model.predict alone    5.14 s   35.4 slices/s
    (b) predict_volume (whole)          5.22 s   34.9 slices/s   (b)/(a) 1.015
    (c) overhead (b) - (a)              0.08 s   (timed alone: 0.12 s)
    (d) load_case                       0.09 s
    target < 10 s per volume: MET

    last run (load ~2.8 throughout):
    (a) network                         8.51 s   21.4 slices/s
    (b) predict_volume                 10.62 s   17.1 slices/s   (b)/(a) 1.25
    (c) overhead (b) - (a)              2.11 s   (timed alone: 0.56 s, 0.12..4.36)
    (d) load_case                       0.09 s
    batch 8 / 16 / 32                  11.46 / 10.62 / 10.39 s
    target < 10 s per volume: NOT MET (best run 4.99 s)

The non-network steps take ~0.1 s on a quiet CPU but up to 4.4 s on a shared
one: ``to_native_stack`` does two small multi-threaded OpenBLAS matmuls per
slice (``geometry.to_native``), which stall when the cores are oversubscribed;
with ``OPENBLAS_NUM_THREADS=1`` they stay at 0.10-0.14 s even at load 6.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

LJUBLJANA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ms_ljubljana_patient07"
TARGET_S = 10.0
SWEEP = (8, 16, 32)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


class _NoNetwork:
    """Stands in for the model: answers ``predict`` with zeros at no cost."""

    def __init__(self, input_shape):
        self.input_shape = input_shape

    def predict(self, x, batch_size=None, verbose=0):
        return np.zeros((*x.shape[:3], 1), np.float32)


def _volume(tmp: Path):
    """The case to predict: the real sample if present, else a synthetic one of its grid."""
    from mslesion.data.cohort import discover_cases

    if LJUBLJANA.exists():
        return discover_cases(LJUBLJANA).cases[0], f"Ljubljana patient 07 ({LJUBLJANA})"
    from mslesion.data.synthetic import generate_cohort

    generate_cohort(tmp / "synthetic", 1, seed=0, shape=(182, 218, 182), spacing_mm=(1, 1, 1))
    return discover_cases(tmp / "synthetic").cases[0], "synthetic volume (Ljubljana sample not found)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="sm.unet", help="registry key")
    p.add_argument("--backbone", default="mobilenetv2", help="encoder backbone ('' for none)")
    p.add_argument("--size", type=int, default=256, help="model grid (size x size)")
    p.add_argument("--context", type=int, default=1, help="2.5D context slices (channels = context)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--sweep-repeats", type=int, default=3, help="repeats per batch size in the sweep")
    p.add_argument("--batch-size", type=int, default=16)
    a = p.parse_args(argv)
    from mslesion.env.quiet_import import import_tensorflow

    import_tensorflow()  # without its start-up lines, as the CLI

    from mslesion.data.loading import load_case
    from mslesion.data.prep import PrepConfig
    from mslesion.data.slicing import slice_case
    from mslesion.infer.inference import TrainedRun, predict_volume
    from mslesion.models import build_model, count_params

    with tempfile.TemporaryDirectory() as tmp:
        case, source = _volume(Path(tmp))
        prep = PrepConfig(size=(a.size, a.size), context=a.context)
        loaded = load_case(case, source=prep.source())
        sliced = slice_case(loaded.stack, loaded.mask, loaded.modalities, loaded.spacing_zhw_mm, prep.slicing(),
                            selection="all")
        x, n = sliced.images, len(sliced.images)

        params = {"input_shape": x.shape[1:]}
        if a.backbone:
            params["backbone"] = a.backbone
        if a.model.startswith("sm."):
            params["weights"] = None
        model = build_model(a.model, **params)
        given = {"run_dir": Path(tmp), "checkpoint": "untrained", "model": model, "prep": prep, "config": {},
                 "prep_record": prep.to_dict()}  # fmt: skip
        fields = {f.name for f in dataclasses.fields(TrainedRun)}
        run = TrainedRun(**{k: v for k, v in given.items() if k in fields})
        # the same run with the network replaced by zeros: predict_volume's own work alone
        stub = dataclasses.replace(run, model=_NoNetwork(model.input_shape))

        print(f"volume: {source}")
        print(f"  stack {loaded.stack.shape} -> {n} slices of {x.shape[1:]} ({sliced.geometry.fit}, pad "
              f"{sliced.geometry.pad})")  # fmt: skip
        print(f"model: {a.model}" + (f":{a.backbone}" if a.backbone else "")
              + f", {count_params(model)['total']:,} params, untrained")  # fmt: skip

        def network(bs: int):
            return lambda: model.predict(x, batch_size=bs, verbose=0)

        def volume(bs: int):
            return lambda: predict_volume(run, loaded, bs)

        def non_network():
            predict_volume(stub, loaded, a.batch_size)

        def load():
            load_case(case, source=prep.source())

        # warm-up: tracing of the predict function, first-touch allocations; the other
        # batch sizes on a few batches only (a new batch size costs no noticeable retrace)
        t0 = time.perf_counter()
        volume(a.batch_size)()
        for bs in SWEEP:
            model.predict(x[: 2 * bs], batch_size=bs, verbose=0)
        non_network()
        load()
        print(f"warm-up: {time.perf_counter() - t0:.1f} s; load average before timing: {_load()}")

        others = [bs for bs in SWEEP if bs != a.batch_size]
        times = {"a": [], "b": [], "c'": [], "d": [], **{bs: [] for bs in others}}
        for r in range(a.repeats):
            # One round of every measurement, in an order rotated each round, so
            # drift and other work on the machine hit all of them alike.
            tasks = [("a", network(a.batch_size)), ("b", volume(a.batch_size))]
            tasks += [(bs, volume(bs)) for bs in others if r < a.sweep_repeats]
            for key, fn in tasks[r % len(tasks) :] + tasks[: r % len(tasks)]:
                times[key].append(_timed(fn))
            times["c'"].append(_timed(non_network))
            times["d"].append(_timed(load))
        med = {k: statistics.median(v) for k, v in times.items() if v}
        t_a, t_b, t_c, t_d, t_alone = med["a"], med["b"], med["b"] - med["a"], med["d"], med["c'"]

        print(f"\n== {n} slices, batch {a.batch_size}, median of {a.repeats} runs ==")
        print(f"{'step':<34} {'seconds':>8} {'slices/s':>9} {'x (a)':>7}  {'min..max':>15}")
        rows = (
            ("(a) network: model.predict alone", t_a, times["a"]),
            ("(b) predict_volume (whole)", t_b, times["b"]),
            ("(c) overhead: (b) - (a)", t_c, None),
            ("    non-network steps, timed alone", t_alone, times["c'"]),
            ("(d) load_case (NIfTI -> stack)", t_d, times["d"]),
        )
        for name, t, all_t in rows:
            rate = f"{n / t:9.1f}" if name.startswith(("(a)", "(b)")) else f"{'-':>9}"
            spread = f"{min(all_t):6.2f}..{max(all_t):6.2f}" if all_t else f"{'-':>15}"
            print(f"{name:<34} {t:8.3f} {rate} {t / t_a:7.3f}  {spread}")
        print(f"(b)/(a): {t_b / t_a:.3f}  (non-network share of predict_volume: {t_alone / t_b:.1%})")

        print(f"\n== predict_volume by batch size (median of {min(a.sweep_repeats, a.repeats)}; batch "
              f"{a.batch_size}: of {a.repeats}) ==")  # fmt: skip
        print(f"{'batch':>5} {'seconds':>8} {'slices/s':>9} {'x (a)':>7}")
        for bs in sorted({a.batch_size, *(k for k in others if k in med)}):
            t = med["b" if bs == a.batch_size else bs]
            print(f"{bs:>5} {t:8.3f} {n / t:9.1f} {t / t_a:7.3f}")

        cores = os.cpu_count() or 1
        busy = max(os.getloadavg()[:2]) > cores + 0.5
        print(f"load average after timing: {_load()} ({cores} cores"
              + ("; OTHER WORK SHARED THE CPU, figures are pessimistic)" if busy else ")"))  # fmt: skip
        met = t_b < TARGET_S
        print(f"\ntarget < {TARGET_S:.0f} s per volume: {'MET' if met else 'NOT MET'} "
              f"(median {t_b:.2f} s predict_volume, {t_b + t_d:.2f} s with loading; "
              f"best run {min(times['b']):.2f} s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
