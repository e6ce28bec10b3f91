import keras
import numpy as np
import pytest

from mslesion.train.batchnorm import adapt_momentum, recalibrate


def bn_model(momentum=0.999, frozen_second=False):
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization(momentum=momentum, name="bn1")(x)
    frozen = keras.layers.BatchNormalization(momentum=momentum, name="bn2")
    frozen.trainable = not frozen_second
    x = frozen(x)
    return keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(x))


def test_adapt_momentum_caps_only_trainable_layers():
    model = bn_model(frozen_second=True)
    changed = adapt_momentum(model, total_steps=100, horizon=10)
    assert changed == {"bn1": 0.9}
    assert model.get_layer("bn2").momentum == 0.999
    assert adapt_momentum(bn_model(0.5), total_steps=100) == {}


def test_adapt_momentum_ceiling_binds_on_long_runs():
    # 10,000 planned steps would allow 0.999; the ceiling keeps per-epoch statistics current
    assert adapt_momentum(bn_model(), total_steps=10_000) == {"bn1": 0.9, "bn2": 0.9}
    assert adapt_momentum(bn_model(), total_steps=10_000, ceiling=0.99) == {"bn1": 0.99, "bn2": 0.99}
    assert adapt_momentum(bn_model(), total_steps=0) == {"bn1": 0.9, "bn2": 0.9}
    with pytest.raises(ValueError, match="ceiling"):
        adapt_momentum(bn_model(), total_steps=100, ceiling=1.0)


def test_recalibrate_sets_moving_stats_to_the_batch_average():
    model = bn_model(frozen_second=True)
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, (4, 8, 8, 2)).astype("float32") for _ in range(5)]
    conv = keras.Model(model.input, model.layers[1].output)
    expected = np.mean([np.asarray(conv(b)).mean(axis=(0, 1, 2)) for b in batches], axis=0)
    frozen_before = np.asarray(model.get_layer("bn2").moving_mean).copy()
    assert recalibrate(model, [(b, None) for b in batches]) == 5
    np.testing.assert_allclose(np.asarray(model.get_layer("bn1").moving_mean), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(model.get_layer("bn2").moving_mean), frozen_before)
    assert model.get_layer("bn1").momentum == 0.999  # restored
