"""The training subcommands' flags are generated from their config dataclasses (mslesion.cli.options)."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields

import pytest

from mslesion.cli.options import config_from, flag_values
from mslesion.cli.train import _BY_HAND, add_train, add_train3d, add_tune
from mslesion.train.config import TrainConfig
from mslesion.train.training3d import Train3DConfig
from mslesion.train.tuning import TuneConfig

COMMANDS = [("train", add_train, TrainConfig), ("tune", add_tune, TuneConfig), ("train3d", add_train3d, Train3DConfig)]


def parser_for(add):
    parser = argparse.ArgumentParser()
    add(parser.add_subparsers())
    return parser


@pytest.mark.parametrize("name, add, cls", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_option_has_a_flag_and_no_flag_given_sets_nothing(name, add, cls):
    args = parser_for(add).parse_args([name])
    names = {f.name for f in fields(cls)} - set(_BY_HAND)
    assert names <= set(vars(args)), f"fields without a flag: {names - set(vars(args))}"
    assert flag_values(args, cls, skip=_BY_HAND) == {}  # nothing given: the recipe and --config decide


def test_train_flags_parse_to_the_fields_they_name():
    args = parser_for(add_train).parse_args([
        "train", "data/slices/x", "--model-param", "filter_num=[8,16]", "--model-param", "backbone=vgg16",
        "--loss-param", "gamma=0.75", "--no-tensorboard", "--no-recalibrate-bn", "--augment", "--cache-gb", "0.5",
        "--strategy", "default", "--reduce-lr-patience", "3", "--mixed-precision"])  # fmt: skip
    given = flag_values(args, TrainConfig, skip=_BY_HAND)
    assert given == {"dataset": "data/slices/x", "model_params": {"filter_num": [8, 16], "backbone": "vgg16"},
                     "loss_params": {"gamma": 0.75}, "tensorboard": False, "recalibrate_bn": False, "augment": True,
                     "cache_gb": 0.5, "strategy": "default", "reduce_lr_patience": 3}  # fmt: skip
    assert args.mixed_precision == "on"
    with pytest.raises(SystemExit):  # choices come from the field metadata
        parser_for(add_train).parse_args(["train", "x", "--strategy", "gpu"])


def test_tuples_and_lists_keep_their_types_and_flags_beat_the_config_file(tmp_path):
    config = tmp_path / "tune.json"
    config.write_text(json.dumps({"dataset": "d", "tuner": "random", "max_trials": 7, "epochs": 3}))
    args = parser_for(add_tune).parse_args(["tune", "--config", str(config), "--log-uniform", "1e-5", "1e-1",
                                            "--learning-rates", "0.1", "0.01", "--epochs", "2"])  # fmt: skip
    tune = config_from(args, TuneConfig, flag_values(args, TuneConfig, skip=_BY_HAND))
    assert tune.log_uniform == (1e-5, 1e-1) and tune.learning_rates == [0.1, 0.01]
    assert (tune.tuner, tune.max_trials, tune.epochs) == ("random", 7, 2)  # file, file, flag over file
    args = parser_for(add_train3d).parse_args(["train3d", "v", "--patch", "32", "32", "16", "--no-augment"])
    run = config_from(args, Train3DConfig, flag_values(args, Train3DConfig, skip=_BY_HAND))
    assert run.patch == (32, 32, 16) and run.augment is False and run.stride == (32, 32, 32)
    assert run.model == "native.r2_att_unet_3d"  # the subclass default, not RunConfig's


def test_help_states_the_recipe_defaults_a_user_gets():
    from mslesion.study.recipes import DEFAULT_RECIPE, recipe

    text = parser_for(add_train)._subparsers._group_actions[0].choices["train"].format_help()
    assert f"(default {recipe(DEFAULT_RECIPE)['model']})" in " ".join(text.split())
    assert "--no-recalibrate-bn" in text and "--reduce-lr-factor" in text
