#!/usr/bin/env python
"""The toolkit's training chain against a plain Keras loop, on the same NIfTI patients.

The plain loop is the baseline of issue 10 (the MS small-data regime): a
segmentation_models ``Unet("mobilenetv2", encoder_weights=None)``, every BN
momentum set to 0.9 and no recalibration, ``sm.losses.bce_dice_loss``, Adam
1e-3, batch 16, shuffled; axial slices with more than 500 brain voxels, z-score
over voxels > 0, ``cv2.resize`` stretched to ``--size`` (area for images,
nearest for masks); probabilities resized back linearly and thresholded at 0.5.

The toolkit rows run ``mslesion prep --selection brain --size S S`` and
``mslesion train --model sm.unet --model-param backbone=mobilenetv2
--model-param weights=null`` with each named configuration of
``mslesion.study.recipes.TRAINING_CONFIGS`` (default: ``bce_dice``, the issue's
command), then ``mslesion evaluate --source`` with the default checkpoint
(``model.keras``). Every row is scored the same way: Dice over each whole
evaluation volume, in inference mode; toolkit rows also print the run's own
training-mode and inference-mode validation Dice (``final_eval.json``).

With one patient (e.g. ``../shared/data/ms_ljubljana_patient07``) training and
evaluation patients are the same: that measures whether a chain learns and
keeps in inference mode what it learned, not how it generalises. Give
``--train`` and ``--eval`` patient ids to hold patients out::

    .venv/bin/python benchmarks/plain_vs_toolkit.py ../shared/data/ms_ljubljana_patient07 --epochs 15
    .venv/bin/python benchmarks/plain_vs_toolkit.py DATA --train 1 2 --eval 3 --configs bce_dice bce_dice_aug
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

MIN_BRAIN_VOXELS = 500


def plain_slices(flair: np.ndarray, mask: np.ndarray | None, size: int):
    """The plain loop's preprocessing: z-score over voxels > 0, slices with > 500 brain voxels, stretched."""
    import cv2

    brain = flair > 0
    x = np.zeros_like(flair, dtype=np.float32)
    x[brain] = (flair[brain] - flair[brain].mean()) / (flair[brain].std() + 1e-8)
    keep = [k for k in range(flair.shape[2]) if brain[:, :, k].sum() > MIN_BRAIN_VOXELS]
    images = np.stack([cv2.resize(x[:, :, k], (size, size), interpolation=cv2.INTER_AREA) for k in keep])[..., None]
    masks = None
    if mask is not None:
        masks = np.stack([cv2.resize(mask[:, :, k].astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
                          for k in keep]).astype(np.float32)[..., None]  # fmt: skip
    return keep, images, masks


def load_nifti(case) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    flair = np.asarray(nib.load(str(case.image("flair"))).dataobj, dtype=np.float32)
    mask = np.asarray(nib.load(str(next(iter(case.masks.values())))).dataobj) > 0
    return flair, mask


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float(2 * np.logical_and(a, b).sum() / total) if total else 1.0


def plain_loop(train_cases, eval_cases, size: int, epochs: int, batch: int, seed: int) -> dict:
    """Train and score the plain loop; returns {"dice": {patient: value}, "seconds": float}."""
    import cv2
    import keras
    import segmentation_models as sm

    keras.utils.set_random_seed(seed)
    data = [plain_slices(*load_nifti(c), size)[1:] for c in train_cases]
    x = np.concatenate([d[0] for d in data])
    y = np.concatenate([d[1] for d in data])
    model = sm.Unet("mobilenetv2", encoder_weights=None, input_shape=(size, size, 1), classes=1, activation="sigmoid")
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    model.compile(keras.optimizers.Adam(1e-3), loss=sm.losses.bce_dice_loss)
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=True, verbose=0)
    seconds = time.perf_counter() - t0
    scores = {}
    for case in eval_cases:
        flair, mask = load_nifti(case)
        keep, images, _ = plain_slices(flair, None, size)
        prob = model.predict(images, batch_size=batch, verbose=0)[..., 0]
        pred = np.zeros(mask.shape, dtype=bool)
        h, w = flair.shape[:2]
        for k, p in zip(keep, prob):
            pred[:, :, k] = cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR) > 0.5
        scores[case.patient_id] = dice(pred, mask)
    return {"dice": scores, "seconds": seconds, "train_slices": int(len(x))}


def toolkit(source: Path, work: Path, train_ids, eval_ids, config_name: str, size: int, epochs: int, batch: int,
            seed: int, model_params: dict | None = None, options: dict | None = None,
            tag: str | None = None) -> dict:  # fmt: skip
    """prep + train + evaluate through the toolkit's own API, as the README's commands do."""
    import pandas as pd

    from mslesion.data.prep import PrepConfig, prepare_dataset
    from mslesion.evaluate.config import EvalConfig
    from mslesion.evaluate.evaluation import evaluate
    from mslesion.fileio import load_json
    from mslesion.study.recipes import TRAINING_CONFIGS
    from mslesion.train.training import train

    dataset = work / "dataset"
    if not (dataset / "prep_config.json").exists():
        prepare_dataset(source, dataset, PrepConfig(selection="brain", size=(size, size), test_fraction=0.0,
                                                    val_fraction=0.0, seed=seed), progress=False)  # fmt: skip
        _restrict(dataset, train_ids)
    params = {"backbone": "mobilenetv2", "weights": None, **(model_params or {})}
    t0 = time.perf_counter()
    run = train({"dataset": str(dataset), "model": "sm.unet", "model_params": params, "epochs": epochs,
                 "batch_size": batch, "seed": seed, "val_fraction": 0.0, "runs_root": str(work / "runs"),
                 "tag": tag or config_name, **TRAINING_CONFIGS[config_name], **(options or {})}, verbose=0,
                overwrite=True)  # fmt: skip
    seconds = time.perf_counter() - t0
    out = evaluate(run, EvalConfig(source=str(source), patients=eval_ids, overwrite=True), verbose=False)
    per_patient = pd.read_csv(out / "per_patient.csv", dtype={"patient": str})
    final = load_json(run / "final_eval.json")
    chosen = final["candidates"][final["chosen"]]
    return {"dice": dict(zip(per_patient["patient"], per_patient["dice"])), "seconds": seconds,
            "chosen": final["chosen"], "training_mode_val_dice": chosen["training_mode_val_dice"],
            "inference_val_dice": chosen["inference"]["dice"], "run": str(run)}  # fmt: skip


def _restrict(dataset: Path, train_ids) -> None:
    """Train on ``train_ids`` only (all patients when None); the others become the test part of ``splits.json``."""
    from mslesion.data.reader import read_manifest
    from mslesion.data.splits import load_splits, save_splits

    everyone = sorted(set(read_manifest(dataset)["patient"].astype(str)))
    chosen = everyone if not train_ids else [p for p in everyone if p in set(train_ids)]
    splits = load_splits(dataset / "splits.json")
    splits["folds"] = [{"train": chosen, "val": [], "test": [p for p in everyone if p not in chosen]}]
    save_splits(dataset / "splits.json", splits)


def main(argv: list[str] | None = None) -> int:
    from mslesion.data.cohort import discover_cases
    from mslesion.fileio import save_text
    from mslesion.study.recipes import TRAINING_CONFIGS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path, help="a NIfTI dataset folder or one patient's folder")
    p.add_argument("--train", nargs="+", help="training patient ids (default: all)")
    p.add_argument("--eval", nargs="+", help="evaluation patient ids (default: the training patients)")
    p.add_argument("--configs", nargs="*", default=["bce_dice"], choices=list(TRAINING_CONFIGS),
                   help="toolkit configurations (none: the plain loop only)")
    p.add_argument("--no-plain", action="store_true", help="toolkit rows only")
    p.add_argument("--variant", action="append", default=[], metavar="CONFIG:KEY=JSON[,KEY=JSON]",
                   help="an extra toolkit row: a configuration with TrainConfig options changed "
                        "(model.KEY for model parameters), e.g. bce_dice:bn_max_momentum=0.99 or "
                        "bce_dice:model.decoder_use_batchnorm=false")  # fmt: skip
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", help="repeat every row with each of these seeds and summarise")
    p.add_argument("--work", type=Path, default=Path("runs/plain_vs_toolkit"))
    p.add_argument("--overwrite", action="store_true", help="replace an earlier table and its runs")
    a = p.parse_args(argv)
    from mslesion.env.quiet_import import import_tensorflow

    import_tensorflow()  # without its start-up lines, as the CLI
    cases = {c.patient_id: c for c in discover_cases(a.source).cases}
    if not cases:
        p.error(f"{a.source}: no patients found")
    missing = [i for i in (a.train or []) + (a.eval or []) if i not in cases]
    if missing:
        p.error(f"{a.source}: no patient {', '.join(missing)} (found: {', '.join(sorted(cases))})")
    source, work = a.source.resolve(), a.work.resolve()
    if work == source or source in work.parents or work in source.parents:
        p.error(f"--work {a.work} overlaps the source {a.source}; choose a folder outside it")
    table_file = a.work / "plain_vs_toolkit.json"
    if table_file.exists() and not a.overwrite:
        p.error(f"{table_file} exists; pass --overwrite to replace it (and redo the runs)")
    train_ids = a.train or sorted(cases)
    eval_ids = a.eval or train_ids
    seeds = a.seeds or [a.seed]
    variants = [(name, {}, {}, name) for name in a.configs] + [_variant(p, v) for v in a.variant]
    rows = []
    for seed in seeds:
        if not a.no_plain:
            r = plain_loop([cases[i] for i in train_ids], [cases[i] for i in eval_ids], a.size, a.epochs,
                           a.batch_size, seed)  # fmt: skip
            rows.append({"chain": "plain Keras loop", "seed": seed, **_row(r, eval_ids)})
        for i, (name, params, options, label) in enumerate(variants):
            tag = name if not (params or options) else f"variant{i}"
            r = toolkit(source, work, a.train, eval_ids, name, a.size, a.epochs, a.batch_size, seed, params, options,
                        tag=tag if len(seeds) == 1 else f"{tag}_seed{seed}")  # fmt: skip
            rows.append({"chain": f"mslesion {label}", "seed": seed, **_row(r, eval_ids),
                         "val Dice training mode": r["training_mode_val_dice"],
                         "val Dice inference": r["inference_val_dice"], "checkpoint": r["chosen"]})  # fmt: skip
        save_text(table_file, json.dumps(rows, indent=2, default=float) + "\n")  # what is done so far survives
    same = "same as training" if set(eval_ids) == set(train_ids) else "held out"
    print(f"source {a.source}; train {' '.join(train_ids)}; evaluate {' '.join(eval_ids)} ({same}); "
          f"{a.size}x{a.size}, {a.epochs} epochs, batch {a.batch_size}, seed{'s' if len(seeds) > 1 else ''} "
          f"{' '.join(map(str, seeds))}")  # fmt: skip
    import pandas as pd

    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if len(seeds) > 1:
        print(f"\nover {len(seeds)} seeds (mean Dice of the evaluation patients per seed):")
        print(seed_summary(table).to_string(float_format=lambda v: f"{v:.3f}"))
    return 0


def _variant(parser, text: str) -> tuple[str, dict, dict, str]:
    from mslesion.study.recipes import TRAINING_CONFIGS

    name, _, changes = text.partition(":")
    if name not in TRAINING_CONFIGS or not changes:
        parser.error(f"--variant {text}: expected CONFIG:KEY=JSON with CONFIG one of {', '.join(TRAINING_CONFIGS)}")
    params, options = {}, {}
    for item in changes.split(","):
        key, _, value = item.partition("=")
        target = params if key.startswith("model.") else options
        target[key.removeprefix("model.")] = json.loads(value)
    return name, params, options, text


def seed_summary(table):
    """Per chain over seeds: mean, SD and median of the per-seed mean Dice, its minimum, seeds below 0.1."""
    grouped = table.groupby("chain", sort=False)["mean Dice"]
    return grouped.agg(mean="mean", sd="std", median="median", min="min",
                       below_0_1=lambda v: float((v < 0.1).mean()), seeds="count")  # fmt: skip


def _row(result: dict, eval_ids) -> dict:
    values = [result["dice"].get(i, float("nan")) for i in eval_ids]
    row = {f"Dice {i}": v for i, v in zip(eval_ids, values)}
    return {**row, "mean Dice": float(np.nanmean(values)), "train s": result["seconds"]}


if __name__ == "__main__":
    sys.exit(main())
