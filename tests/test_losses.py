import keras
import numpy as np
import pytest

from mslesion.evaluate.metrics import compute_dice
from mslesion.train.keras_metrics import DiceScore, default_metrics
from mslesion.train.losses import (
    LOSSES,
    BceDiceLoss,
    FocalTverskyLoss,
    SoftDiceLoss,
    TverskyLoss,
    bce_dice_loss,
    focal_tversky_loss,
    get_loss,
    soft_dice_loss,
    tversky_loss,
)

# batch of 2 slices 2x2: slice 0 has lesion, slice 1 is empty with a false alarm of 0.5
Y_TRUE = np.array([[[1, 1], [0, 0]], [[0, 0], [0, 0]]], np.float32)[..., None]
Y_PRED = np.array([[[0.8, 0.6], [0.2, 0.0]], [[0.0, 0.5], [0.0, 0.0]]], np.float32)[..., None]
TP, FN, FP = 1.4, 0.6, 0.7  # pooled over the batch


def f(x):
    return float(keras.ops.convert_to_numpy(x))


def test_soft_dice_hand_computed():
    assert f(soft_dice_loss(Y_TRUE, Y_PRED, smooth=0)) == pytest.approx(1 - 2 * TP / (2 * TP + FN + FP))
    assert f(soft_dice_loss(Y_TRUE, Y_PRED, smooth=1)) == pytest.approx(1 - (2 * TP + 1) / (2 * TP + FN + FP + 1))
    per = keras.ops.convert_to_numpy(soft_dice_loss(Y_TRUE, Y_PRED, smooth=1, per_image=True))
    assert per == pytest.approx([1 - (2.8 + 1) / (2.8 + 0.6 + 0.2 + 1), 1 - 1 / (0.5 + 1)])


def test_empty_slice_predicted_empty_costs_nothing():
    empty = np.zeros((1, 4, 4, 1), np.float32)
    for name in ("dice", "tversky", "focal_tversky", "bce_dice"):
        assert f(get_loss(name)(empty, empty)) == pytest.approx(0, abs=1e-6), name
    assert f(keras.losses.Dice(axis=(1, 2, 3))(empty, empty)) == pytest.approx(1.0)  # why we don't use it


def test_tversky_follows_seed003_eq_4_8_and_the_keras_alpha_mapping():
    # alpha weighs FN, beta weighs FP
    assert f(tversky_loss(Y_TRUE, Y_PRED, 0.85, 0.15, smooth=0)) == pytest.approx(1 - TP / (TP + 0.85 * FN + 0.15 * FP))
    # Røvang's (2021) eq 4.10: one missed lesion pixel, alpha 0.7, Omega 2 -> index 2/2.7
    one = np.zeros((1, 3, 3, 1), np.float32)
    one[0, 1, 1] = 1
    assert 1 - f(tversky_loss(one, np.zeros_like(one), 0.7, 0.3, smooth=2)) == pytest.approx(2 / 2.7)
    # Keras' Tversky puts its alpha on false negatives too (despite its docstring)
    keras_value = f(keras.losses.tversky(Y_TRUE, Y_PRED, alpha=0.85, beta=0.15))
    assert f(tversky_loss(Y_TRUE, Y_PRED, 0.85, 0.15, smooth=0)) == pytest.approx(keras_value, rel=1e-5)
    assert f(tversky_loss(Y_TRUE, Y_PRED, 0.5, 0.5, smooth=0)) == pytest.approx(f(soft_dice_loss(Y_TRUE, Y_PRED, 0)))


def test_focal_tversky_exponent():
    base = f(tversky_loss(Y_TRUE, Y_PRED))
    assert f(focal_tversky_loss(Y_TRUE, Y_PRED, gamma=1.0)) == pytest.approx(base)
    assert f(focal_tversky_loss(Y_TRUE, Y_PRED)) == pytest.approx(base ** (4 / 3))
    assert f(focal_tversky_loss(Y_TRUE, Y_PRED, gamma=0.75)) == pytest.approx(base**0.75)


def test_bce_dice_weights():
    bce = f(keras.losses.BinaryCrossentropy()(Y_TRUE, Y_PRED))
    dice = f(soft_dice_loss(Y_TRUE, Y_PRED))
    assert f(bce_dice_loss(Y_TRUE, Y_PRED)) == pytest.approx(0.5 * bce + 0.5 * dice, rel=1e-5)
    assert f(BceDiceLoss(bce_weight=1.0, dice_weight=0.0)(Y_TRUE, Y_PRED)) == pytest.approx(bce, rel=1e-5)


@pytest.mark.parametrize("cls", [SoftDiceLoss, TverskyLoss, FocalTverskyLoss, BceDiceLoss])
def test_loss_config_round_trip(cls):
    loss = cls(smooth=2.0)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(again) is cls and again.params == loss.params
    assert f(again(Y_TRUE, Y_PRED)) == pytest.approx(f(loss(Y_TRUE, Y_PRED)))
    with pytest.raises(TypeError, match="unknown parameters"):
        cls(smoth=1.0)


def test_get_loss():
    assert set(LOSSES) == {"bce", "dice", "bce_dice", "tversky", "focal_tversky"}
    assert get_loss("focal_tversky", gamma=2.0).params["gamma"] == 2.0
    with pytest.raises(KeyError, match="unknown loss"):
        get_loss("hinge")


def test_dice_metric_pools_over_batches_and_matches_exact_dice():
    rng = np.random.default_rng(0)
    truth = rng.random((6, 8, 8, 1)) > 0.8
    prob = np.clip(truth * 0.7 + rng.random(truth.shape) * 0.5, 0, 1).astype(np.float32)
    metric = DiceScore()
    for i in range(0, 6, 2):  # three batches
        metric.update_state(truth[i : i + 2].astype(np.float32), prob[i : i + 2])
    assert f(metric.result()) == pytest.approx(compute_dice(truth, prob > 0.5))
    metric.reset_state()
    metric.update_state(np.zeros((1, 4, 4, 1)), np.zeros((1, 4, 4, 1)))
    assert f(metric.result()) == 0.0


def test_model_compiled_with_our_losses_and_metrics_saves_and_loads(tmp_path):
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inputs))
    model.compile(optimizer="adam", loss=FocalTverskyLoss(gamma=1.5), metrics=default_metrics())
    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype(np.float32)
    y = (x > 0.7).astype(np.float32)
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.loss.params["gamma"] == 1.5
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    results = loaded.evaluate(x, y, verbose=0, return_dict=True)
    assert {"accuracy", "dice", "iou", "loss"} <= set(results)
