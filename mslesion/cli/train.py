"""Training subcommands: ``models``, ``train``, ``tune``, ``train3d``."""

from __future__ import annotations

from mslesion.cli.options import add_run_options, config_file, config_from, mixed_precision, run_options

__all__ = ["add_train", "add_tune", "add_models", "add_train3d"]


def add_train(subparsers) -> None:
    from mslesion.study.recipes import DEFAULT_RECIPE, TRAINING_CONFIGS

    p = subparsers.add_parser("train", help="train a registry model on a prepared dataset; writes a run folder")
    add_run_options(p)
    p.add_argument("--recipe", choices=("none", *TRAINING_CONFIGS),
                   help=f"named options to start from (default {DEFAULT_RECIPE}, the best measured on real data; "
                        "seed000: the backbone report's BCE on lesion slices; none: the TrainConfig defaults). A recipe "
                        "brings sm.unet with a MobileNetV2 encoder and batch 16 unless --model is given; "
                        "--config and flags override it")  # fmt: skip
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--augment", action="store_true", default=None)
    p.add_argument("--balance", action="store_true", default=None, help="class-balanced slice sampling")
    p.add_argument("--reduce-lr-patience", type=int)
    p.add_argument("--early-stopping-patience", type=int)
    p.add_argument("--val-fraction", type=float,
                   help="patients carved from train for validation when the split has none (default 0.1); "
                        "0: validate on the training patients (one or two patients)")
    p.add_argument("--max-minutes", type=float,
                   help="training-time budget: stop before the epoch that would pass it (--epochs stays the cap)")
    p.add_argument("--lesion-slices-only", action="store_true", default=None,
                   help="train on slices with lesion only (the backbone report); validation keeps every slice")
    p.add_argument("--strategy", choices=("auto", "tpu", "mirrored", "default"))
    p.add_argument("--mixed-precision", choices=("auto", "on", "off"), nargs="?", const="on", default=None,
                   help="float16/bfloat16 compute; auto: where it pays (GPU of compute capability >= 7, TPU)")
    p.add_argument("--jit-compile", action="store_true", default=None, help="XLA-compile the training step")
    p.add_argument("--input-pipeline", choices=("auto", "graph", "generator"),
                   help="auto (default): batches gathered in the graph from memory on a GPU/TPU, in Python on the CPU")
    p.add_argument("--no-tensorboard", dest="tensorboard", action="store_false", default=None,
                   help="write no TensorBoard logs (default: <run>/tensorboard: epoch scalars, validation images)")
    p.add_argument("--augment-on", choices=("auto", "host", "device"),
                   help="where --augment runs; auto (default): in the train step on a GPU (without XLA), "
                        "else a tf.data map on the host")
    p.add_argument("--deterministic", action="store_true", default=None,
                   help="repeat bit for bit on this machine (op determinism; augmentation runs serially)")
    p.add_argument("--overwrite", action="store_true",
                   help="start the run afresh: remove what an earlier run wrote in its folder")  # fmt: skip

    def run(a):
        import json

        from mslesion.study.recipes import recipe
        from mslesion.train.config import TrainConfig
        from mslesion.train.training import train

        name = a.recipe or config_file(a).get("recipe") or DEFAULT_RECIPE
        own_model = a.model is not None or "model" in config_file(a)
        defaults = {**recipe(name, with_model=not own_model), "recipe": None if name == "none" else name}
        config = config_from(a, TrainConfig, defaults=defaults, mapping={
            **run_options(a), "learning_rate": a.learning_rate, "augment": a.augment, "balance": a.balance,
            "reduce_lr_patience": a.reduce_lr_patience, "early_stopping_patience": a.early_stopping_patience,
            "strategy": a.strategy, "mixed_precision": mixed_precision(a.mixed_precision),
            "deterministic": a.deterministic, "jit_compile": a.jit_compile, "input_pipeline": a.input_pipeline,
            "augment_on": a.augment_on, "tensorboard": a.tensorboard,
            "max_minutes": a.max_minutes, "lesion_slices_only": a.lesion_slices_only, "val_fraction": a.val_fraction,
        })  # fmt: skip
        print(f"recipe {name}: {config.model} {json.dumps(config.model_params)}, loss {config.loss}, "
              f"augment {config.augment}, balance {config.balance}, batch {config.batch_size}, "
              f"learning rate {config.learning_rate:g}")  # fmt: skip
        from mslesion.progress import fit_verbosity

        # a live progress bar with ETA on a terminal; one line per epoch when the output is a log file
        print(f"run folder: {train(config, verbose=fit_verbosity(), overwrite=a.overwrite)}")

    p.set_defaults(run=run)


def add_tune(subparsers) -> None:
    from mslesion.train.tuning import TUNERS

    p = subparsers.add_parser("tune", help="keras-tuner learning-rate search; writes tuning.csv")
    add_run_options(p)
    p.add_argument("--tuner", choices=TUNERS)
    p.add_argument("--learning-rates", type=float, nargs="+", help="fixed values (default 1e-1 1e-2 1e-3 1e-4)")
    p.add_argument("--log-uniform", type=float, nargs=2, metavar=("LOW", "HIGH"))
    p.add_argument("--max-trials", type=int)
    p.add_argument("--overwrite", action="store_true", default=None,
                   help="start the search afresh (keras-tuner state and trial curves)")  # fmt: skip

    def run(a):
        from mslesion.train.tuning import TuneConfig, tune

        config = config_from(a, TuneConfig, {
            **run_options(a), "tuner": a.tuner, "learning_rates": a.learning_rates,
            "log_uniform": tuple(a.log_uniform) if a.log_uniform else None, "max_trials": a.max_trials,
            "overwrite": a.overwrite,
        })  # fmt: skip
        run_dir = tune(config)
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
    p = subparsers.add_parser("train3d", help="train a 3D patch model (default native.r2_att_unet_3d) on prep3d volumes")
    add_run_options(p)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--patch", type=int, nargs=3, metavar=("D", "H", "W"))
    p.add_argument("--stride", type=int, nargs=3, metavar=("D", "H", "W"))
    p.add_argument("--lesion-fraction", type=float, help="share of each batch drawn from patches with lesion")
    p.add_argument("--patches-per-epoch", type=int)
    p.add_argument("--deterministic", action="store_true", default=None,
                   help="repeat bit for bit on this machine (op determinism; augmentation runs serially)")
    p.add_argument("--overwrite", action="store_true",
                   help="start the run afresh: remove what an earlier run wrote in its folder")  # fmt: skip

    def run(a):
        from mslesion.train.training3d import Train3DConfig, train_3d

        common = run_options(a)
        if common["model"] is None:
            common.pop("model")
        config = config_from(a, Train3DConfig, {
            **common, "learning_rate": a.learning_rate, "patch": a.patch, "stride": a.stride,
            "lesion_fraction": a.lesion_fraction, "patches_per_epoch": a.patches_per_epoch,
            "deterministic": a.deterministic,
        })  # fmt: skip
        print(f"run folder: {train_3d(config, overwrite=a.overwrite)}")

    p.set_defaults(run=run)
