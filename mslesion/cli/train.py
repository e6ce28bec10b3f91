"""Training subcommands: ``models``, ``train``, ``tune``, ``train3d``.

Their flags are generated from the config dataclasses' fields (:func:`mslesion.cli.options.add_config_flags`):
a recipe (train only), then ``--config file.json``, then the flags given, each layer over the one before.
"""

from __future__ import annotations

from mslesion.cli.options import (
    add_config_flags,
    add_mixed_precision,
    config_file,
    config_from,
    flag_values,
    mixed_precision,
)

__all__ = ["add_train", "add_tune", "add_models", "add_train3d"]

# filled by hand below: --mixed-precision takes auto/on/off, --recipe names a set of the others
_BY_HAND = ("mixed_precision", "recipe")


def _add_layered(p, cls, shown: dict | None = None) -> None:
    p.add_argument("--config", help="JSON file of options; flags override it")
    add_config_flags(p, cls, skip=_BY_HAND, layered=True, shown=shown)
    add_mixed_precision(p)


def _given(a, cls) -> dict:
    return {**flag_values(a, cls, skip=_BY_HAND), "mixed_precision": mixed_precision(a.mixed_precision)}


def _add_folds(p) -> None:
    p.add_argument("--folds", nargs="+", metavar="K", help=(
        "cross-validation: train these folds of splits.json (or all), one run each under .../fold_<k>; "
        "finished folds are skipped, so re-running resumes the study"))


def _train_each(a, config, trainer, **kwargs):
    """One run, or with --folds one run per fold; prints the run folder(s)."""
    if not a.folds:
        print(f"run folder: {trainer(config, **kwargs)}")
        return
    from mslesion.train.folds import train_folds

    if a.fold is not None:
        raise SystemExit("give --fold or --folds, not both")
    bad = [k for k in a.folds if not k.isdigit()]
    if bad and a.folds != ["all"]:
        raise SystemExit(f"--folds takes fold numbers or all, not {' '.join(bad)}")
    folds = "all" if a.folds == ["all"] else [int(k) for k in a.folds]
    runs = train_folds(config, folds, trainer, **kwargs)
    print("run folders:\n  " + "\n  ".join(map(str, runs)))
    print(f"score them out of fold: mslesion evaluate {' '.join(map(str, runs))} --cross-validation --out-dir CV_DIR")


def add_train(subparsers) -> None:
    from mslesion.study.recipes import DEFAULT_RECIPE, TRAINING_CONFIGS, recipe
    from mslesion.train.config import TrainConfig

    p = subparsers.add_parser("train", help="train a registry model on a prepared dataset; writes a run folder")
    p.add_argument("--recipe", choices=("none", *TRAINING_CONFIGS),
                   help=f"named options to start from (default {DEFAULT_RECIPE}, the best measured on real data; "
                        "seed000: the backbone report's BCE on lesion slices; none: the TrainConfig defaults). A recipe "
                        "brings sm.unet with a MobileNetV2 encoder and batch 16 unless --model is given; "
                        "--config and flags override it")  # fmt: skip
    _add_layered(p, TrainConfig, shown=recipe(DEFAULT_RECIPE, with_model=True))
    _add_folds(p)
    p.add_argument("--overwrite", action="store_true",
                   help="start the run afresh: remove what an earlier run wrote in its folder")  # fmt: skip

    def run(a):
        import json

        from mslesion.progress import fit_verbosity
        from mslesion.train.training import train

        name = a.recipe or config_file(a).get("recipe") or DEFAULT_RECIPE
        own_model = a.model is not None or "model" in config_file(a)
        defaults = {**recipe(name, with_model=not own_model), "recipe": None if name == "none" else name}
        config = config_from(a, TrainConfig, defaults=defaults, mapping=_given(a, TrainConfig))
        print(f"recipe {name}: {config.model} {json.dumps(config.model_params)}, loss {config.loss}, "
              f"augment {config.augment}, balance {config.balance}, batch {config.batch_size}, "
              f"learning rate {config.learning_rate:g} ({config.optimizer}, {config.lr_schedule})"
              + (f", starting from {config.init_from}" if config.init_from else ""))  # fmt: skip
        # a live progress bar with ETA on a terminal; one line per epoch when the output is a log file
        _train_each(a, config, train, verbose=fit_verbosity(), overwrite=a.overwrite)

    p.set_defaults(run=run)


def add_tune(subparsers) -> None:
    from mslesion.train.tuning import TuneConfig

    p = subparsers.add_parser("tune", help="keras-tuner learning-rate search; writes tuning.csv")
    _add_layered(p, TuneConfig)

    def run(a):
        from mslesion.train.tuning import tune

        run_dir = tune(config_from(a, TuneConfig, _given(a, TuneConfig)))
        print((run_dir / "tuning.csv").read_text())
        print(f"run folder: {run_dir}")

    p.set_defaults(run=run)


def add_models(subparsers) -> None:
    p = subparsers.add_parser("models", help="list the model registry: names, defaults, parameter counts, backbones")
    p.add_argument("--no-counts", action="store_true", help="skip building each model at 256x256x3 to count parameters")

    def run(a):
        from mslesion.models.catalogue import describe_registry, describe_sm_backbones
        from mslesion.study.table_6_1 import describe_report_models

        for lines in (describe_registry(counts=not a.no_counts), describe_sm_backbones(), describe_report_models()):
            for line in lines:
                print(line)
            print()

    p.set_defaults(run=run)


def add_train3d(subparsers) -> None:
    from mslesion.train.training3d import Train3DConfig

    p = subparsers.add_parser("train3d", help="train a 3D patch model (default native.r2_att_unet_3d) on prep3d volumes")
    _add_layered(p, Train3DConfig)
    _add_folds(p)
    p.add_argument("--overwrite", action="store_true",
                   help="start the run afresh: remove what an earlier run wrote in its folder")  # fmt: skip

    def run(a):
        from mslesion.train.training3d import train_3d

        _train_each(a, config_from(a, Train3DConfig, _given(a, Train3DConfig)), train_3d, overwrite=a.overwrite)

    p.set_defaults(run=run)
