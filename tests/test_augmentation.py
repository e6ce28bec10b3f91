"""Paired augmentation on the device: inside the train step, image and mask moved together, the saved model plain.

The two-replica MirroredStrategy run with augmentation in the train step is in test_accelerator.py.
"""

import json

import keras
import numpy as np
import pytest

from mslesion.train import runtime
from mslesion.train.augmentation import Augmentation, augment_in_train_step

T4 = {"kind": "GPU", "name": "Tesla T4", "compute_capability": (7, 5)}
TPU = {"kind": "TPU", "name": "/device:TPU:0", "compute_capability": None}


@pytest.mark.parametrize("requested, devices, jit, place", [
    ("auto", [], False, "host"),  # CPU only: same cores either way, and the host map overlaps the step
    ("auto", [T4], False, "device"),
    ("auto", [T4], True, "host"),  # XLA cannot compile the warp
    ("auto", [TPU] * 8, False, "host"),
    ("host", [T4], False, "host"),
    ("device", [], False, "device"),
])  # fmt: skip
def test_augmentation_goes_on_the_gpu_unless_xla_compiles_the_step(requested, devices, jit, place):
    assert runtime.augment_place(requested, devices, jit) == place


def test_augmentation_on_the_device_is_refused_where_xla_compiles_the_step():
    with pytest.raises(ValueError, match="XLA"):
        runtime.augment_place("device", [TPU], False)
    with pytest.raises(ValueError, match="XLA"):
        runtime.augment_place("device", [T4], True)
    with pytest.raises(ValueError, match="auto, host or device"):
        runtime.augment_place("gpu", [T4], False)


def _masks(n=8, size=32, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = np.zeros((n, size, size, 1), np.float32)
    for k in range(n):  # an off-centre block, so flips and shifts move it
        r, c = rng.integers(2, size // 2, 2)
        y[k, r : r + 8, c : c + 5] = 1.0
    return y


def _tiny_model():
    inp = keras.Input((32, 32, 1))
    out = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inp)
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
    return model


def test_the_train_step_sees_augmented_batches_with_image_and_mask_moved_together(monkeypatch):
    model = _tiny_model()
    seen = []
    plain = type(model).train_step

    def spy(self, data):
        seen.append([np.asarray(t) for t in data[:2]])
        return plain(self, data)

    monkeypatch.setattr(type(model), "train_step", spy)
    augment_in_train_step(model, Augmentation(flip=True, rotation_deg=20, shift=0.1, zoom=0.1), seed=1)
    y = _masks()
    model.train_step((y.copy(), y.copy()))  # the image *is* its mask: "same transform" is checkable
    (xa, ya), = seen
    assert set(np.unique(ya)) <= {0.0, 1.0}
    assert ((xa > 0.5) == (ya > 0.5)).mean() > 0.99
    moved = [not np.array_equal(ya[k], y[k]) for k in range(len(y))]
    assert sum(moved) >= len(y) // 2  # the step trained on transformed slices, not the originals


def test_a_fit_with_augmentation_in_the_step_saves_a_plain_model(tmp_path):
    import tensorflow as tf

    model = _tiny_model()
    before = [w.copy() for w in model.get_weights()]
    layers = augment_in_train_step(model, Augmentation(), seed=0)
    y = _masks(16)
    model.fit(tf.data.Dataset.from_tensor_slices((y, y)).batch(8), epochs=2, verbose=0)
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))
    assert int(layers[0].generator.state.numpy()[1]) > 0  # the layers drew numbers in the compiled step
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")  # no custom objects needed
    assert type(loaded).__name__ == "Functional" and "train_step" not in vars(loaded)
    assert len(loaded.weights) == len(model.weights) == 2  # the augmentation layers are not part of it
    np.testing.assert_allclose(loaded.predict(y, verbose=0), model.predict(y, verbose=0), atol=1e-6)


def test_train_records_where_augmentation_ran(tmp_path):
    from mslesion.data.quick import quick_synthetic_dataset
    from mslesion.train.training import train

    quick_synthetic_dataset(tmp_path / "ds", 3, size=32, shape=(64, 64, 8), spacing_mm=(3.6, 3.6, 10.0),
                            selection="all", test_fraction=0.0, val_fraction=0.34)  # fmt: skip
    base = {"dataset": str(tmp_path / "ds"), "model": "kuc.unet", "model_params": {"filter_num": [4, 8]},
            "batch_size": 4, "epochs": 1, "augment": True}  # fmt: skip
    for place in ("device", "host"):
        run = train({**base, "augment_on": place, "run_dir": str(tmp_path / place)}, verbose=0)
        recorded = json.loads((run / "config.json").read_text())
        assert recorded["augment_on_used"] == place
        assert (run / "model.keras").is_file()
    plain = train({**base, "augment": False, "augment_on": "device", "run_dir": str(tmp_path / "none")}, verbose=0)
    assert json.loads((plain / "config.json").read_text())["augment_on_used"] is None  # nothing to place
