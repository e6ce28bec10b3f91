"""native.att_unet_pyramid: builds, saves, exposes its attention maps, trains on every backend."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from mslesion.models import build_model, count_params, load_model
from mslesion.models.pyramid_att_unet import FILTERS, attention_maps

NAME = "native.att_unet_pyramid"
SMALL = {"input_shape": (64, 64, 3), "filters": (8, 16, 32)}
RNG = np.random.default_rng(0)


def batch(n: int = 2, shape=(64, 64, 3)) -> np.ndarray:
    return RNG.normal(0, 1, (n, *shape)).astype("float32")


def test_default_size_is_rovangs_unet256():
    model = build_model(NAME, input_shape=(256, 256, 1))
    assert FILTERS == (32, 64, 128, 256, 512)
    assert model.output_shape == (None, 256, 256, 1) and model.output.dtype == "float32"
    assert model.get_layer("bottleneck_conv2").output.shape[1:] == (16, 16, 512)  # Røvang (2021): 16x16 deepest, 512 maps
    assert count_params(model)["total"] == 7_908_036


def test_small_model_outputs_probabilities_and_pyramid_adds_parameters():
    model = build_model(NAME, **SMALL, num_classes=2)
    y = np.asarray(model(batch(), training=False))
    assert y.shape == (2, 64, 64, 2) and y.min() >= 0 and y.max() <= 1
    with_pyramid = count_params(build_model(NAME, **SMALL))["total"]
    without = count_params(build_model(NAME, **SMALL, pyramid=False))
    # the pyramid adds C input channels to each coarser level's first 3x3 conv: 9 * C * width kernels
    assert with_pyramid - without["total"] == 9 * 3 * (16 + 32) == 1296
    assert with_pyramid == 31_746


@pytest.mark.parametrize("activation, norm, groups", [("mish", "group", 4), ("relu", "group", 8), ("mish", "batch", 4)])
def test_group_norm_and_mish_variants_build(activation, norm, groups):
    model = build_model(NAME, **SMALL, activation=activation, norm=norm, groups=groups)
    params = count_params(model)
    assert params["trainable"] == 31_426  # gamma/beta per channel either way
    assert params["non_trainable"] == (0 if norm == "group" else 320)  # BN moving statistics only
    assert model.get_layer("enc_0_act1").get_config()["activation"] == activation
    assert np.isfinite(np.asarray(model(batch(1), training=False))).all()


@pytest.mark.parametrize("params, match", [
    ({"input_shape": (62, 64, 1), "filters": (8, 16, 32)}, "multiples of 4"),
    ({**SMALL, "norm": "group", "groups": 16}, "divisible by groups=16"),
    ({**SMALL, "activation": "gelu"}, "activation must be"),
])  # fmt: skip
def test_bad_options_are_refused(params, match):
    with pytest.raises(ValueError, match=match):
        build_model(NAME, **params)


def test_one_or_two_channel_inputs_build():
    for channels in (1, 2):
        model = build_model(NAME, input_shape=(32, 32, channels), filters=(8, 16))
        assert model(batch(1, (32, 32, channels))).shape == (1, 32, 32, 1)


def test_attention_maps_survive_save_and_load(tmp_path):
    # the round trip itself is checked for every native model in test_native_models.py
    model = build_model(NAME, **SMALL, activation="mish", norm="group")
    x = batch(3)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = load_model(path, compile=False)
    for name, values in attention_maps(loaded, x).items():
        np.testing.assert_array_equal(values, attention_maps(model, x)[name])


def test_attention_maps_one_per_gate_at_skip_resolution():
    model = build_model(NAME, input_shape=(64, 64, 1), filters=(8, 16, 32, 64))
    maps = attention_maps(model, batch(2, (64, 64, 1)))
    assert list(maps) == ["attention_2", "attention_1", "attention_0"]  # deepest first
    assert [m.shape for m in maps.values()] == [(2, 16, 16, 1), (2, 32, 32, 1), (2, 64, 64, 1)]
    assert all(m.dtype == np.float32 and m.min() >= 0 and m.max() <= 1 for m in maps.values())
    assert len({float(m.std()) for m in maps.values()}) == 3  # distinct gates, not one map thrice
    with pytest.raises(ValueError, match="no attention"):
        attention_maps(build_model("kuc.unet", input_shape=(64, 64, 1), filter_num=(8, 16)), batch(1, (64, 64, 1)))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from mslesion.data.prep import PrepConfig, prepare_dataset
    from mslesion.data.synthetic import generate_cohort

    root = tmp_path_factory.mktemp("att_unet_pyramid")
    generate_cohort(root / "raw", 8, seed=0, shape=(128, 128, 16), spacing_mm=(1.8, 1.8, 5.0))
    cfg = PrepConfig(size=(64, 64), selection="brain", split="train_val_test", test_fraction=0.25, val_fraction=0.2)
    prepare_dataset(root / "raw", root / "slices", cfg, progress=False)
    return root / "slices"


@pytest.mark.slow
def test_trains_on_synthetic_cohort_and_evaluates(dataset, tmp_path):
    import pandas as pd

    from mslesion.evaluate.evaluation import evaluate
    from mslesion.train.history import read_history
    from mslesion.train.training import train

    # lr 1e-2 (not 3e-3): best validation Dice 0.76-0.91 over training seeds 0-4, 3e-3 reached 0.4-0.64
    config = {"dataset": str(dataset), "runs_root": str(tmp_path / "runs"), "batch_size": 8, "model": NAME,
              "model_params": {"filters": [8, 16, 32]}, "loss": "dice", "learning_rate": 1e-2,
              "epochs": 12}  # fmt: skip
    run = train(config, verbose=0)
    history = read_history(run)
    print(history.val_dice.round(3).tolist())
    assert history.val_dice.iloc[0] < 0.3 and history.val_dice.max() > 0.6
    per_patient = pd.read_csv(evaluate(run, verbose=False) / "per_patient.csv")
    print(per_patient.dice.round(3).tolist())
    assert len(per_patient) >= 2 and per_patient.dice.min() > 0.3


def test_plot_attention_maps_one_axis_per_gate_plus_image_and_colourbar():
    from mslesion.report.figures import plot_attention_maps

    truth = np.zeros((64, 64), bool)
    truth[20:30, 24:34] = True
    maps = {f"attention_{k}": RNG.uniform(0, 1, (1, 64 // 2**k, 64 // 2**k, 1)) for k in (2, 1, 0)}
    fig = plot_attention_maps(batch(1)[0], maps, truth=truth, title="validation slice")
    fig.savefig(io.BytesIO(), format="png")
    assert len(fig.axes) == 1 + 3 + 1
    assert fig.axes[-1].get_ylabel().startswith("attention coefficient")
    titles = ["attention_2 (16x16)", "attention_1 (32x32)", "attention_0 (64x64)"]
    assert [ax.get_title().split("\n")[0] for ax in fig.axes[1:4]] == titles  # line 2: the panel's range
    assert len(plot_attention_maps(batch(1)[0, ..., 0], {"attention_0": maps["attention_0"][0, ..., 0]}).axes) == 3
    with pytest.raises(ValueError, match="does not tile"):
        plot_attention_maps(truth, {"bad": np.zeros((24, 24))})


def test_plot_attention_maps_png_is_deterministic(tmp_path):
    from mslesion.report.figures import plot_attention_maps
    from mslesion.report.plotting import save_figure

    truth = np.zeros((32, 32), bool)
    truth[10:16, 10:16] = True
    maps = {"attention_1": np.linspace(0, 1, 256).reshape(16, 16), "attention_0": np.eye(32)}
    paths = [save_figure(plot_attention_maps(np.arange(1024.0).reshape(32, 32), maps, truth), tmp_path / f"{i}.png")
             for i in range(2)]  # fmt: skip
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_mixed_precision_keeps_a_float32_sigmoid():
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_model(NAME, input_shape=(16, 16, 1), filters=(4, 8))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("enc_0_conv1").compute_dtype == "float16"
    assert model.output.dtype == "float32"
    y = np.asarray(model(batch(2, (16, 16, 1)), training=False))
    assert y.dtype == np.float32 and np.isfinite(y).all()
