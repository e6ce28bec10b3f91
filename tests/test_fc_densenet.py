"""native.fc_densenet: Rondinella et al.'s (2023) FC-DenseNet + SA + ConvLSTM on 2.5D triplets."""


import numpy as np
import pandas as pd
import pytest

from mslesion.models import count_params
from mslesion.models.fc_densenet import ContextSlice, fc_densenet
from mslesion.models.registry import build_model

TINY = {"growth_rate": 4, "layers_per_block": 2, "blocks": 3, "initial_filters": 8, "dropout": 0.0}
CONVLSTM_WEIGHTS = 2 * 3 * 3 * 60 * 240  # kernel + recurrent kernel, 60 -> 60 maps, 4 gates, bias-free


def test_reference_settings_reproduce_table_1_exactly():
    # Rondinella et al.'s (2023) table 1 (13,242,782): FLAIR replicated to 3 channels per slice, 2-way softmax, no ConvLSTM counted
    paper = fc_densenet((160, 160, 9), num_classes=2, lstm=False)
    assert count_params(paper)["trainable"] == 13_242_782
    model = build_model("native.fc_densenet", input_shape=(160, 160, 3))
    assert count_params(model) == {"trainable": 13_500_889, "non_trainable": 42_240, "total": 13_543_129}
    assert count_params(model)["trainable"] == 13_242_782 - 864 - 229 + CONVLSTM_WEIGHTS


@pytest.mark.parametrize("attention, lstm, trainable", [
    (False, False, 2_053_609), (False, True, 2_312_809), (True, False, 13_241_689), (True, True, 13_500_889)])
def test_ablation_variants(attention, lstm, trainable):
    model = fc_densenet((160, 160, 3), attention=attention, lstm=lstm)
    assert count_params(model)["trainable"] == trainable
    sa_layers = [w for w in model.weights if "_sa_" in w.path]
    assert bool(sa_layers) == attention and ("bottleneck_convlstm" in [x.name for x in model.layers]) == lstm


def test_encoder_is_shared_by_the_three_slices():
    model = fc_densenet((64, 64, 3), **TINY)
    encoder = model.get_layer("slice_encoder")
    calls = next(x for x in model.get_config()["layers"] if x["name"] == "slice_encoder")["inbound_nodes"]
    assert len(calls) == 3
    # counted once: the whole model is one encoder + ConvLSTM + decoder
    others = sum(count_params(x)["total"] for x in model.layers if x is not encoder)
    assert count_params(model)["total"] == count_params(encoder)["total"] + others
    # and without the LSTM (one encoder call) only the ConvLSTM's weights are missing
    plain = fc_densenet((64, 64, 3), lstm=False, **TINY)
    assert count_params(model)["total"] - count_params(plain)["total"] == 2 * 3 * 3 * 8 * 32


@pytest.mark.parametrize("shape, classes", [((64, 64, 3), 1), ((64, 64, 6), 2)])
def test_small_model_maps_the_current_slice_to_probabilities(shape, classes):
    model = fc_densenet(shape, num_classes=classes, **TINY)
    x = np.random.default_rng(0).normal(size=(2, *shape)).astype("float32")
    y = np.asarray(model.predict(x, verbose=0))
    assert y.shape == (2, 64, 64, classes) and np.isfinite(y).all() and y.min() >= 0 and y.max() <= 1


def test_slices_are_read_modality_major():
    x = np.arange(2 * 4 * 4 * 6, dtype="float32").reshape(2, 4, 4, 6)  # flair[-1,0,+1], t1[-1,0,+1]
    for index in range(3):
        np.testing.assert_array_equal(np.asarray(ContextSlice(index)(x)), x[..., [index, 3 + index]])


@pytest.mark.parametrize("options, changes", [
    ({}, {"previous": True, "next": True}),
    ({"lstm_output": "current"}, {"previous": True, "next": False}),
    ({"lstm": False}, {"previous": False, "next": False})])
def test_which_neighbour_slices_reach_the_output(options, changes):
    model = fc_densenet((32, 32, 6), **{**TINY, "blocks": 2}, **options)
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 6)).astype("float32")
    base = np.asarray(model(x, training=True))  # batch statistics: no untrained moving statistics involved
    for name, channels in (("previous", [0, 3]), ("next", [2, 5])):
        moved = x.copy()
        moved[..., channels] += 1.0
        changed = not np.allclose(np.asarray(model(moved, training=True)), base, atol=1e-6)
        assert changed == changes[name], name


@pytest.mark.parametrize("shape, match", [
    ((64, 64, 2), r"2\.5D slice triplets.*mslesion prep --context 3"), ((64, 64, 4), "--context 3"),
    ((60, 64, 3), "multiples of 8")])
def test_refuses_inputs_it_cannot_read(shape, match):
    with pytest.raises(ValueError, match=match):
        fc_densenet(shape, **TINY)
    with pytest.raises(ValueError, match="lstm_output"):
        fc_densenet((64, 64, 3), lstm_output="first", **TINY)


@pytest.mark.slow
def test_learns_the_synthetic_cohort_from_triplets_and_evaluates(tmp_path):
    from mslesion.data.prep import PrepConfig, prepare_dataset
    from mslesion.data.synthetic import generate_cohort
    from mslesion.evaluate.evaluation import evaluate
    from mslesion.train.history import read_history
    from mslesion.train.training import train

    generate_cohort(tmp_path / "raw", 8, seed=0, shape=(128, 128, 16), spacing_mm=(1.8, 1.8, 5.0))
    prep = PrepConfig(size=(64, 64), selection="brain", split="train_val_test", test_fraction=0.25, val_fraction=0.2,
                      context=3)  # fmt: skip
    prepare_dataset(tmp_path / "raw", tmp_path / "slices", prep, progress=False)
    params = {"growth_rate": 8, "layers_per_block": 2, "blocks": 3, "initial_filters": 16, "dropout": 0.0}
    run = train({"dataset": str(tmp_path / "slices"), "runs_root": str(tmp_path / "runs"), "batch_size": 8,
                 "model": "native.fc_densenet", "model_params": params, "loss": "dice", "learning_rate": 3e-3,
                 "epochs": 12}, verbose=0)  # fmt: skip
    history = read_history(run)
    assert history.val_dice.iloc[0] < 0.3 and history.val_dice.max() > 0.6
    per_patient = pd.read_csv(evaluate(run, verbose=False) / "per_patient.csv", dtype={"patient": str})
    assert len(per_patient) == 2 and per_patient.dice.mean() > 0.3 and per_patient.dice.min() > 0.2
