#!/usr/bin/env python
"""Training configurations compared on one prepared dataset, under one training-time budget.

For each named configuration of ``mslesion.study.recipes.TRAINING_CONFIGS`` (seed
000's BCE on lesion slices, the README's soft Dice, BCE + Dice with and without
augmentation and balanced sampling, focal Tversky), it trains the same model on
fold ``--fold`` of ``DATASET``'s ``splits.json`` until ``--minutes`` of training
would be passed, then scores ``model.keras`` per patient on the fold's test
patients (whole volumes, as ``mslesion evaluate`` does) and prints one row per
configuration: epochs reached, per-patient Dice mean / median / SD, patients
with Dice below 0.1, lesion F1. The table is also written as CSV under
``--runs``. Runs are folders like any other (``--overwrite`` to redo them).

Run on any prepared dataset folder, e.g. the LGG development cases::

    mslesion prep ../shared/data/lgg_dev data/slices/lgg_dev --modalities flair \\
        --selection all --size 128 128 --split train_val_test --test-fraction 0.2 --val-fraction 0.15
    .venv/bin/python benchmarks/compare_configs.py data/slices/lgg_dev --minutes 15

Options: ``--configs NAME ...`` (default all), ``--model`` and ``--model-param
KEY=JSON`` (default sm.unet, MobileNetV2 encoder from scratch), ``--batch-size``,
``--fold``, ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from mslesion.fileio import save_text
    from mslesion.study.experiments import compare_training_configs
    from mslesion.study.recipes import TRAINING_CONFIGS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", type=Path)
    p.add_argument("--configs", nargs="+", choices=list(TRAINING_CONFIGS))
    p.add_argument("--minutes", type=float, default=15.0, help="training-time budget per configuration")
    p.add_argument("--max-epochs", type=int, default=200)
    p.add_argument("--model", default="sm.unet")
    p.add_argument("--model-param", action="append", metavar="KEY=JSON")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", type=Path, default=Path("runs/compare"))
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    from mslesion.env.quiet_import import import_tensorflow

    import_tensorflow()  # without its start-up lines, as the CLI
    runs, dataset = a.runs.resolve(), a.dataset.resolve()
    if runs == dataset or dataset in runs.parents or runs in dataset.parents:
        p.error(f"--runs {a.runs} overlaps the dataset {a.dataset}; choose a folder outside it")
    out = a.runs / f"compare_{a.dataset.name}_fold{a.fold}.csv"
    if out.exists() and not a.overwrite:
        p.error(f"{out} exists; pass --overwrite to replace it (and redo the runs)")
    params = None
    if a.model_param:
        params = {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in a.model_param)}
    table = compare_training_configs(a.dataset, a.runs, a.configs, a.minutes, a.max_epochs, a.model, params, a.fold,
                                     a.seed, overwrite=a.overwrite, batch_size=a.batch_size)  # fmt: skip
    save_text(out, table.to_csv(index=False))
    print(f"dataset {a.dataset}, fold {a.fold}, model {a.model} {params or ''}, budget {a.minutes:g} min of training")
    print(table.drop(columns=["run"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"table: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
