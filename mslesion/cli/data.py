"""Data subcommands: ``synth``, ``prep``, ``split``, ``prep3d``."""

from __future__ import annotations

from pathlib import Path

from mslesion.cli.options import add_config_flags, config_from_flags

__all__ = ["add_synth", "add_prep", "add_split", "add_prep3d"]


def add_synth(subparsers) -> None:
    p = subparsers.add_parser("synth", help="write a synthetic MS cohort as NIfTI (Muslim et al. layout)")
    p.add_argument("out_dir", type=Path, nargs="?", default=Path("data/raw/synthetic"))
    p.add_argument("--patients", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shape", type=int, nargs=3, default=(256, 256, 24), metavar=("X", "Y", "Z"))
    p.add_argument("--spacing", type=float, nargs=3, default=(0.9, 0.9, 5.0), metavar=("SX", "SY", "SZ"),
                   help="voxel size in mm")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace a synthetic cohort written there before")

    def run(a):
        from mslesion.data.synthetic import generate_cohort

        folders = generate_cohort(a.out_dir, a.patients, a.seed, tuple(a.shape), tuple(a.spacing), overwrite=a.overwrite)
        print(f"wrote {len(folders)} patients to {a.out_dir}")

    p.set_defaults(run=run)


def add_prep(subparsers) -> None:
    from mslesion.data.prep import PrepConfig

    p = subparsers.add_parser("prep", help="extract normalised 2D slices (.npy) from volumes, split by patient")
    p.add_argument("source", type=Path, help="dataset folder (Muslim, Ljubljana, LGG layout, or use patterns)")
    p.add_argument("out_dir", type=Path, help="dataset folder to write")
    add_config_flags(p, PrepConfig)  # one flag per field of its source, slicing and split parts
    p.add_argument("--jobs", type=int, default=1, help="patients prepared in parallel")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset mslesion prep wrote at OUT before")

    def run(a):
        from mslesion.data.prep import prepare_dataset

        summary = prepare_dataset(a.source, a.out_dir, config_from_flags(a, PrepConfig), jobs=a.jobs,
                                  progress=not a.no_progress, overwrite=a.overwrite)  # fmt: skip
        print(summary)
        return 1 if summary.patients == 0 else 0

    p.set_defaults(run=run)


def add_split(subparsers) -> None:
    from mslesion.data.splits import SPLIT_MODES

    p = subparsers.add_parser("split", help="(re)split a prepared dataset's patients; writes splits.json")
    p.add_argument("dataset_dir", type=Path)
    p.add_argument("--mode", choices=SPLIT_MODES, default="holdout")
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace the dataset's existing splits.json")

    def run(a):
        from mslesion.data.prep import resplit_dataset

        splits = resplit_dataset(a.dataset_dir, a.mode, test_fraction=a.test_fraction, val_fraction=a.val_fraction,
                                 folds=a.folds, seed=a.seed, overwrite=a.overwrite)  # fmt: skip
        for i, fold in enumerate(splits["folds"]):
            print(f"fold {i}: " + ", ".join(f"{k} {len(v)}" for k, v in fold.items()))

    p.set_defaults(run=run)


# prep3d has its own flags for these fields of SourceConfig
_NOT_PREP3D = ("layout", "image_patterns", "mask_patterns", "modalities", "mask_modality", "allow_empty_masks")


def add_prep3d(subparsers) -> None:
    from mslesion.data.loading import SourceConfig
    from mslesion.data.splits import SPLIT_MODES

    p = subparsers.add_parser("prep3d", help="normalised whole volumes (.npy) for 3D patch models (the 3DR2AUNet paper, 2024)")
    p.add_argument("source", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--layout", default="auto")
    p.add_argument("--modalities", nargs="+", default=["flair"])
    p.add_argument("--split", choices=SPLIT_MODES, default="train_val_test")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--allow-empty-masks", action="store_true")
    add_config_flags(p, SourceConfig, skip=_NOT_PREP3D)  # --register, --skull-strip, --brain-mask-pattern
    p.add_argument("--overwrite", action="store_true", help="replace volumes mslesion prep3d wrote at OUT before")

    def run(a):
        from mslesion.data.volumes3d import prepare_volumes

        done = prepare_volumes(a.source, a.out_dir, tuple(a.modalities), split=a.split, test_fraction=a.test_fraction,
                               val_fraction=a.val_fraction, seed=a.seed, layout=a.layout,
                               allow_empty_masks=a.allow_empty_masks, overwrite=a.overwrite,
                               register=a.register, skull_strip=a.skull_strip,
                               brain_mask_pattern=a.brain_mask_pattern)  # fmt: skip
        print(f"volumes: {done['out_dir']}: {len(done['patients'])} patients, {len(done['failures'])} failed")
        for f in done["failures"]:
            print(f"  FAILED {f['patient']}: {f['error']}: {f['message']}")
        return 1 if not done["patients"] else 0

    p.set_defaults(run=run)
