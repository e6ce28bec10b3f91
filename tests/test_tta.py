"""Test-time augmentation and ensembles: transforms undone exactly, means as stated, members checked."""

import json

import numpy as np
import pandas as pd
import pytest

from mslesion.evaluate.config import EvalConfig
from mslesion.evaluate.evaluation import evaluate
from mslesion.infer import inference
from mslesion.infer.tta import TTA_MODES, predict_tta, transforms

from .conftest import copy_run


@pytest.mark.parametrize("mode, n", [("none", 1), ("flip", 2), ("flip+rot90", 8)])
def test_each_transform_is_undone_exactly_and_the_symmetries_are_distinct(mode, n):
    x = np.random.default_rng(0).random((3, 6, 6, 2))
    pairs = transforms(mode)
    assert len(pairs) == n
    for forward, inverse in pairs:
        np.testing.assert_array_equal(inverse(forward(x)), x)
    seen = {forward(x).tobytes() for forward, _ in pairs}
    assert len(seen) == n  # the eight symmetries of the square are eight different images


def test_tta_mean_is_the_mean_of_the_mapped_back_predictions():
    rng = np.random.default_rng(1)
    x = rng.random((2, 8, 8, 1)).astype(np.float32)
    ramp = np.linspace(0, 1, 8, dtype=np.float32)

    def position_dependent(a):  # not equivariant: TTA changes its output
        return a[..., 0] * ramp[None, None, :]

    flipped = np.flip(position_dependent(np.flip(x, axis=2)), axis=2)
    np.testing.assert_allclose(predict_tta(position_dependent, x, "flip"), (position_dependent(x) + flipped) / 2)
    # an equivariant network (pointwise) is unchanged by any mode
    for mode in TTA_MODES:
        np.testing.assert_allclose(predict_tta(lambda a: a[..., 0] ** 2, x, mode), x[..., 0] ** 2, rtol=1e-6)


def test_rotations_need_square_slices_and_unknown_modes_are_refused():
    with pytest.raises(ValueError, match="square"):
        predict_tta(lambda a: a[..., 0], np.zeros((1, 4, 6, 1), np.float32), "flip+rot90")
    with pytest.raises(ValueError, match="tta must be one of"):
        transforms("rot45")


def test_predict_slices_with_flip_tta_on_a_keras_model():
    import keras

    inp = keras.Input((16, 16, 1))
    model = keras.Model(inp, keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inp))
    x = np.random.default_rng(2).random((4, 16, 16, 1)).astype(np.float32)
    plain = model.predict(x, verbose=0)[..., 0]
    mirrored = np.flip(model.predict(np.flip(x, axis=2), verbose=0)[..., 0], axis=2)
    np.testing.assert_allclose(inference.predict_slices(model, x, tta="flip"), (plain + mirrored) / 2, atol=1e-6)


def _member(trained_run, tmp_path, name: str, bias: float):
    """A copy of the shared run whose output bias is shifted: a second, different ensemble member."""
    import keras

    copy = copy_run(trained_run, tmp_path / name)
    model = keras.models.load_model(copy / "model.keras", compile=False)
    last = [layer for layer in model.layers if layer.weights][-1]
    kernel, b = last.get_weights()
    last.set_weights([kernel, b + bias])
    model.save(copy / "model.keras")
    return copy


def test_an_ensemble_averages_its_members_probabilities(trained_run, tmp_path):
    from mslesion.data.cohort import discover_cases
    from mslesion.data.loading import load_case

    other = _member(trained_run, tmp_path, "other", bias=2.0)
    a, b = inference.open_runs([trained_run, other])
    source = a.prep_record["source"]
    case = discover_cases(source, a.prep_record.get("layout_found") or "auto").cases[0]
    loaded = load_case(case, a.prep.modalities, a.prep.mask_modality, allow_empty_mask=True)
    pa, pb = inference.predict_volume(a, loaded), inference.predict_volume(b, loaded)
    assert not np.allclose(pa, pb)
    np.testing.assert_allclose(inference.predict_volume([a, b], loaded), (pa + pb) / 2, atol=1e-5)


def test_evaluate_an_ensemble_with_tta_records_both_and_needs_an_output_folder(trained_run, tmp_path):
    other = _member(trained_run, tmp_path, "other", bias=0.5)
    with pytest.raises(ValueError, match="out_dir"):
        evaluate(trained_run, EvalConfig(ensemble=[str(other)]), verbose=False)
    out = evaluate(trained_run, EvalConfig(ensemble=[str(other)], tta="flip", out_dir=str(tmp_path / "ens")),
                   verbose=False)  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["members"] == [str(trained_run), str(other)] and summary["tta"] == "flip"
    assert summary["settings"]["tta"] == "flip"
    per_patient = pd.read_csv(out / "per_patient.csv")
    assert len(per_patient) and per_patient.dice.between(0, 1).all()
    single = evaluate(trained_run, EvalConfig(tta="flip", overwrite=True), verbose=False)
    assert single.name == "eval_test_tta-flip"  # beside, not over, the plain evaluation


def test_members_prepared_differently_are_refused_before_any_model_loads(trained_run, tmp_path):
    other = copy_run(trained_run, tmp_path / "other")
    record = json.loads((other / "prep_config.json").read_text())
    record["size"] = [32, 32]
    (other / "prep_config.json").write_text(json.dumps(record))
    (other / "model.keras").write_bytes(b"not a model: never loaded")
    with pytest.raises(ValueError, match="size"):
        inference.open_runs([trained_run, other])


def test_predict_cli_with_two_runs_and_tta_writes_an_ensembles_masks(trained_run, tmp_path):
    from mslesion.cli import main

    other = _member(trained_run, tmp_path, "other", bias=-0.5)
    source = json.loads((trained_run / "prep_config.json").read_text())["source"]
    out = tmp_path / "pred"
    assert main(["predict", str(trained_run), str(other), source, str(out), "--tta", "flip"]) == 0
    config = json.loads((out / "predict_config.json").read_text())
    assert config["tta"] == "flip" and len(config["members"]) == 2
    assert len(pd.read_csv(out / "lesions.csv")) >= 1
