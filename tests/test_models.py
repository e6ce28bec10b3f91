"""mslesion.models: registry, Table 6.1 counts, encoder modes, channels, weights, save/load.

Everything runs offline on CPU: "pretrained" weights are a random VGG16 notop
file written by a fixture, and the ImageNet download is tried for real to check
that it fails fast with a clear error.
"""

from __future__ import annotations

import gc
import socket
import time

import keras
import numpy as np
import pytest

import mslesion  # noqa: F401  (sets SM_FRAMEWORK before anything imports segmentation_models)
from mslesion.errors import MslesionError
from mslesion.models import (
    MODELS,
    BackboneUnavailableError,
    EncoderModeError,
    WeightsUnavailableError,
    build_model,
    count_params,
    list_models,
    load_model,
)
from mslesion.models.sm import SM_BACKBONES, working_backbones
from mslesion.models.weights import keras_cache_dir
from mslesion.study.table_6_1 import REPORT_MODELS, build_report_model, report_models

# NumPy 2 notice raised inside Keras' TF backend on every weight read; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

REGISTRY_NAMES = ["kuc.att_unet", "kuc.r2_unet", "kuc.unet", "kuc.unet_plus", "native.att_unet_pyramid",
                  "native.fc_densenet", "sm.fpn", "sm.linknet", "sm.unet"]  # fmt: skip
VGG16_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG16_PARAMS = 14_714_688  # the notop VGG16 encoder
VGG16_BLOCKS_1_2 = (1792 + 36928) + (73856 + 147584)  # block1 + block2 convs
SIZE = 64


SMALL_NATIVE = {
    "native.att_unet_pyramid": {"filters": [8, 16, 32]},
    # an untrained wide FC-DenseNet overflows in inference mode (see its module doc); small widths stay finite
    "native.fc_densenet": {"growth_rate": 4, "layers_per_block": 2, "blocks": 3, "initial_filters": 8, "dropout": 0.0},
}


def small_params(name: str) -> dict:
    """Cheap settings for a registry entry: few kuc filters, the VGG16 encoder for sm (fastest to trace)."""
    if name in SMALL_NATIVE:
        return SMALL_NATIVE[name]
    return {"filter_num": [8, 16, 32]} if name.startswith("kuc.") else {"backbone": "vgg16"}


def batch(channels: int = 3, size: int = SIZE, n: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, size, size, channels), dtype=np.float32)
    y = (rng.random((n, size, size, 1)) > 0.9).astype(np.float32)
    return x, y


def predict(model, x) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x, training=False))


def free_memory():
    keras.backend.clear_session()
    gc.collect()


def find_layer(model, name):
    """A layer by name anywhere in nested models (kuc nests its backbone, adapters nest the model)."""
    for layer in model.layers:
        if layer.name == name:
            return layer
        if isinstance(layer, keras.Model):
            found = find_layer(layer, name)
            if found is not None:
                return found
    return None


@pytest.fixture(autouse=True, scope="module")
def _clear_after_module():
    yield
    free_memory()


@pytest.fixture(scope="module")
def vgg16_h5(tmp_path_factory):
    """A random-weights VGG16 notop file named like the ImageNet one, in the legacy .h5 layout Keras reads.

    Keras 3 ``save_weights`` only writes ``*.weights.h5`` (a layout ``load_weights``
    does not read from a plain ``.h5`` name), so the encoder is saved whole
    with ``model.save(... .h5)``; ``load_weights`` reads its ``model_weights`` group.
    """
    encoder = keras.applications.VGG16(include_top=False, weights=None)
    path = tmp_path_factory.mktemp("weights") / VGG16_FILE
    encoder.save(path)  # Keras logs that .h5 is legacy: that is the point
    weights = {layer.name: [w.copy() for w in layer.get_weights()] for layer in encoder.layers if layer.weights}
    return path, weights


# ---------------------------------------------------------------- Table 6.1


@pytest.fixture(scope="module")
def table_counts():
    """Counts of the six Table 6.1 models at 256x256x3, each built once, memory freed in between."""
    counts, seconds = {}, {}
    for key in REPORT_MODELS:
        start = time.perf_counter()
        model = build_report_model(key, (256, 256, 3), weights=None)
        counts[key] = count_params(model)
        seconds[key] = time.perf_counter() - start
        del model
        free_memory()
    return counts, seconds


@pytest.mark.slow  # the six Table 6.1 models at 256x256x3
@pytest.mark.parametrize("key", list(REPORT_MODELS))
def test_table_6_1_counts_exact(table_counts, key):
    expected = REPORT_MODELS[key]
    counts, seconds = table_counts
    assert counts[key] == {
        "trainable": expected.trainable,
        "non_trainable": expected.non_trainable,
        "total": expected.total,
    }, f"{expected.display_name} ({seconds[key]:.1f} s to build)"


def test_table_6_1_keys_and_display_names():
    assert list(REPORT_MODELS) == [
        "unet_vgg16_imagenet", "unet_plus_vgg16_imagenet", "att_unet_vgg16_imagenet",
        "unet_scratch", "r2_unet_scratch", "att_unet_scratch",
    ]
    assert REPORT_MODELS["unet_vgg16_imagenet"].display_name == "UNet with VGG Backbone and ImageNet weights"
    assert REPORT_MODELS["r2_unet_scratch"].display_name == "R2 UNet from scratch"


def test_report_models_builds_all_six_small():
    models = report_models(input_shape=(32, 32, 3))
    assert list(models) == list(REPORT_MODELS)
    assert all(m.output.shape == (None, 32, 32, 1) for m in models.values())
    del models
    free_memory()


# ---------------------------------------------------------------- registry


MODELS_3D = ["native.r2_att_unet_3d"]  # (D, H, W, C) inputs: tested in test_r2_att_unet_3d.py


def test_registry_names_and_listing():
    assert sorted(MODELS) == sorted(REGISTRY_NAMES + MODELS_3D)
    rows = {row["name"]: row for row in list_models()}
    assert sorted(rows) == sorted(REGISTRY_NAMES + MODELS_3D)
    assert rows["native.r2_att_unet_3d"]["example_input"] == (64, 64, 64, 1)
    for row in rows.values():
        assert row["available"] is True and row["reason"] is None, row
        assert row["source"] == row["name"].split(".")[0]
        assert row["defaults"]["num_classes"] == 1
    assert rows["sm.unet"]["defaults"]["backbone"] == "resnet34"
    assert list(rows["kuc.unet"]["defaults"]["filter_num"]) == [64, 128, 256, 512, 1024]


def test_unavailable_entry_says_why():
    from mslesion.models import ModelSpec

    spec = ModelSpec("x.net", build_model, "x", requires=("no_such_package_xyz",))
    assert spec.availability() == (False, "missing package(s): no_such_package_xyz")
    spec = ModelSpec("x.net", build_model, "x", check=lambda: "needs a GPU")
    assert spec.availability() == (False, "needs a GPU")


def test_sm_unavailable_with_other_framework(monkeypatch):
    monkeypatch.setenv("SM_FRAMEWORK", "keras")
    row = next(r for r in list_models() if r["name"] == "sm.unet")
    assert row["available"] is False and "tf.keras" in row["reason"]


def test_unknown_model_lists_known_names():
    with pytest.raises(KeyError, match="known: .*kuc.unet.*sm.unet"):
        build_model("unet3d", input_shape=(64, 64, 3))


@pytest.mark.slow  # nine full-size builds, one of 102M parameters
@pytest.mark.parametrize("name", REGISTRY_NAMES)
def test_builds_at_256_with_defaults(name):
    model = build_model(name, input_shape=(256, 256, 3))
    counts = count_params(model)
    assert model.output.shape == (None, 256, 256, 1)
    assert counts["total"] == model.count_params() > 1_000_000
    if name == "kuc.unet":  # the defaults are Table 6.1's UNet from scratch
        assert counts["total"] == REPORT_MODELS["unet_scratch"].total
    del model
    free_memory()


@pytest.mark.parametrize("name", REGISTRY_NAMES)
def test_forward_pass_small(name):
    model = build_model(name, input_shape=(SIZE, SIZE, 3), **small_params(name))
    y = predict(model, batch()[0])
    assert y.shape == (2, SIZE, SIZE, 1)
    assert 0.0 <= y.min() and y.max() <= 1.0


@pytest.mark.parametrize("name", REGISTRY_NAMES)
def test_one_training_step_then_save_load_round_trip(name, tmp_path):
    model = build_model(name, input_shape=(SIZE, SIZE, 3), **small_params(name))
    model.compile(optimizer="adam", loss="binary_crossentropy")
    x, y = batch()
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = load_model(path)
    np.testing.assert_allclose(predict(loaded, x), predict(model, x), atol=1e-6)
    assert loaded.loss == "binary_crossentropy"
    free_memory()


def test_round_trip_with_channel_adapter_and_mslesion_loss(tmp_path, vgg16_h5):
    from mslesion.train.losses import SoftDiceLoss

    model = build_model("kuc.unet", input_shape=(SIZE, SIZE, 2), backbone="VGG16", weights=vgg16_h5[0],
                        filter_num=[8, 16, 32, 64, 128])
    model.compile(optimizer="adam", loss=SoftDiceLoss(), run_eagerly=True)  # eager: no tracing, fast
    model.fit(*batch(channels=2), epochs=1, verbose=0)
    path = tmp_path / "adapter.keras"
    model.save(path)
    loaded = load_model(path)
    x = batch(channels=2)[0]
    np.testing.assert_allclose(predict(loaded, x), predict(model, x), atol=1e-6)
    assert count_params(loaded) == count_params(model)
    assert isinstance(loaded.loss, SoftDiceLoss)
    free_memory()


# ---------------------------------------------------------------- sm backbones


def test_backbone_table_covers_sm():
    import segmentation_models as sm

    assert sorted(SM_BACKBONES) == sorted(sm.get_available_backbone_names())
    assert {"vgg16", "resnet34", "seresnet18", "inceptionv3", "mobilenetv2", "efficientnetb0"} <= set(
        working_backbones())
    assert SM_BACKBONES["densenet121"][0] == "fails"


def test_failing_backbone_raises_clear_error():
    with pytest.raises(BackboneUnavailableError, match="densenet121.*'/'") as info:
        build_model("sm.unet", input_shape=(SIZE, SIZE, 3), backbone="densenet121")
    assert isinstance(info.value, MslesionError)
    with pytest.raises(BackboneUnavailableError, match="unknown sm backbone"):
        build_model("sm.unet", input_shape=(SIZE, SIZE, 3), backbone="resnet999")


@pytest.mark.parametrize("backbone", ["seresnet18", "efficientnetb0"])
def test_sm_backbones_with_extra_layers_round_trip(backbone, tmp_path):
    """SE blocks (Lambda(expand_dims)) and EfficientNet (FixedDropout) need load_model's help."""
    model = build_model("sm.unet", input_shape=(SIZE, SIZE, 3), backbone=backbone)
    model.save(tmp_path / "m.keras")
    x = batch()[0]
    np.testing.assert_allclose(predict(load_model(tmp_path / "m.keras"), x), predict(model, x), atol=1e-6)
    free_memory()


# ---------------------------------------------------------------- encoder modes

ENCODER_CASES = [("kuc.unet", "VGG16"), ("kuc.unet_plus", "VGG16"), ("kuc.att_unet", "VGG16"),
                 ("sm.unet", "vgg16"), ("sm.fpn", "vgg16"), ("sm.linknet", "vgg16")]


@pytest.mark.parametrize("name, backbone", ENCODER_CASES)
def test_encoder_modes_change_trainable_counts(name, backbone):
    extra = {"filter_num": [8, 16, 32, 64, 128]} if name.startswith("kuc.") else {}
    counts = {}
    for mode in ("trainable", 2, 5, "frozen"):
        model = build_model(name, input_shape=(SIZE, SIZE, 3), backbone=backbone, encoder=mode, **extra)
        counts[mode] = count_params(model)
    free_memory()
    assert len({c["total"] for c in counts.values()}) == 1
    base = counts["trainable"]["non_trainable"]  # BN moving statistics of the decoder
    assert counts["frozen"]["non_trainable"] - base == VGG16_PARAMS
    assert counts[2]["non_trainable"] - base == VGG16_BLOCKS_1_2
    assert counts[5] == counts["frozen"]  # VGG16 has five conv blocks


def test_sm_frozen_resnet_freezes_batch_norm_too():
    counts = {}
    for mode in ("trainable", 1, "frozen"):
        counts[mode] = count_params(build_model("sm.unet", input_shape=(SIZE, SIZE, 3), backbone="resnet18",
                                                encoder=mode))
    free_memory()
    assert counts["trainable"]["trainable"] > counts[1]["trainable"] > counts["frozen"]["trainable"]
    assert counts["frozen"]["non_trainable"] > 11_000_000  # the whole ResNet18 encoder, BN included


def test_kuc_freeze_backbone_flag_matches_encoder_mode():
    shape, extra = (SIZE, SIZE, 3), {"backbone": "VGG16", "filter_num": [8, 16, 32, 64, 128]}
    assert count_params(build_model("kuc.unet", input_shape=shape, freeze_backbone=False, **extra)) == count_params(
        build_model("kuc.unet", input_shape=shape, encoder="trainable", **extra))
    with pytest.raises(ValueError, match="contradicts"):
        build_model("kuc.unet", input_shape=shape, freeze_backbone=True, encoder="trainable", **extra)
    free_memory()


@pytest.mark.parametrize("name, params", [
    ("kuc.unet", {"encoder": "frozen"}),
    ("kuc.r2_unet", {"encoder": 2}),
    ("kuc.unet", {"backbone": "VGG16", "encoder": 6}),
    ("sm.unet", {"backbone": "vgg16", "encoder": "half"}),
    ("sm.unet", {"backbone": "vgg16", "encoder": -1}),
])
def test_impossible_encoder_modes_raise(name, params):
    with pytest.raises(EncoderModeError):
        build_model(name, input_shape=(SIZE, SIZE, 3), **params)


# ---------------------------------------------------------------- channels and local weights


def assert_vgg16_weights_equal(model, expected: dict):
    for name, values in expected.items():
        layer = find_layer(model, name)
        assert layer is not None, name
        for got, want in zip(layer.get_weights(), values):
            np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.parametrize("name, backbone", [("kuc.unet", "VGG16"), ("sm.unet", "vgg16")])
def test_local_weights_file_is_loaded(name, backbone, vgg16_h5):
    path, expected = vgg16_h5
    model = build_model(name, input_shape=(SIZE, SIZE, 3), backbone=backbone, weights=str(path))
    assert_vgg16_weights_equal(model, expected)
    random = build_model(name, input_shape=(SIZE, SIZE, 3), backbone=backbone, weights=None)
    assert not np.array_equal(find_layer(random, "block1_conv1").get_weights()[0], expected["block1_conv1"][0])
    free_memory()


@pytest.mark.parametrize("channels", [1, 5])
@pytest.mark.parametrize("name, backbone", [("kuc.unet", "VGG16"), ("sm.unet", "vgg16")])
def test_pretrained_encoder_with_k_channels(name, backbone, channels, vgg16_h5):
    path, expected = vgg16_h5
    extra = {"filter_num": [8, 16, 32, 64, 128]} if name.startswith("kuc.") else {}
    rgb = build_model(name, input_shape=(SIZE, SIZE, 3), backbone=backbone, weights=path, **extra)
    model = build_model(name, input_shape=(SIZE, SIZE, channels), backbone=backbone, weights=path, **extra)
    projection = model.get_layer("channel_projection")
    assert projection.kernel.shape == (1, 1, channels, 3)
    assert count_params(model)["total"] == count_params(rgb)["total"] + 3 * channels + 3
    assert count_params(model)["trainable"] == count_params(rgb)["trainable"] + 3 * channels + 3
    assert_vgg16_weights_equal(model, expected)
    y = predict(model, batch(channels=channels)[0])
    assert y.shape == (2, SIZE, SIZE, 1) and 0 <= y.min() and y.max() <= 1
    free_memory()


def test_repeat_adapter_adds_no_weights(vgg16_h5):
    path, _ = vgg16_h5
    rgb = build_model("sm.unet", input_shape=(SIZE, SIZE, 3), backbone="vgg16", weights=path)
    gray = build_model("sm.unet", input_shape=(SIZE, SIZE, 1), backbone="vgg16", weights=path,
                       channel_adapter="repeat")
    assert gray.get_layer("channel_repeat") is not None
    assert count_params(gray) == count_params(rgb)
    assert predict(gray, batch(channels=1)[0]).shape == (2, SIZE, SIZE, 1)
    with pytest.raises(ValueError, match="1 input channel"):
        build_model("sm.unet", input_shape=(SIZE, SIZE, 5), backbone="vgg16", channel_adapter="repeat")
    free_memory()


@pytest.mark.filterwarnings("ignore:This model usually expects 1 or 3 input channels")
@pytest.mark.parametrize("name, backbone", [("kuc.unet", "VGG16"), ("sm.unet", "vgg16"), ("kuc.unet", None)])
def test_without_pretrained_weights_model_takes_c_channels(name, backbone):
    extra = {"filter_num": [8, 16, 32, 64, 128]} if name.startswith("kuc.") else {}
    model = build_model(name, input_shape=(SIZE, SIZE, 5), backbone=backbone, **extra)
    assert model.input.shape == (None, SIZE, SIZE, 5)
    assert find_layer(model, "channel_projection") is None
    assert predict(model, batch(channels=5)[0]).shape == (2, SIZE, SIZE, 1)
    free_memory()


# ---------------------------------------------------------------- offline ImageNet weights


def _online(host: str) -> bool:
    try:
        socket.create_connection((host, 443), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize("name, backbone, file_name, host", [
    ("kuc.unet", "VGG16", VGG16_FILE, "storage.googleapis.com"),
    ("sm.unet", "resnet34", "resnet34_imagenet_1000_no_top.h5", "github.com"),
])
def test_imagenet_offline_fails_fast_with_clear_error(name, backbone, file_name, host):
    if (keras_cache_dir() / file_name).exists():
        pytest.skip(f"{file_name} is in the Keras cache: nothing to download")
    if _online(host):
        pytest.skip(f"{host} reachable: the offline path cannot be tested here")
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as info:
        build_model(name, input_shape=(SIZE, SIZE, 3), backbone=backbone, weights="imagenet")
    assert time.perf_counter() - start < 30
    error = info.value
    message = str(error)
    assert isinstance(error, MslesionError)
    assert error.url and error.url.startswith("https://") and error.url in message
    assert error.file_name == file_name and file_name in message
    assert str(keras_cache_dir()) in message
    assert f'weights="/path/{file_name}"' in message
    assert error.__cause__ is None and error.__suppress_context__  # no library traceback chained
    free_memory()


def test_missing_local_weights_file(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="weights file not found"):
        build_model("kuc.unet", input_shape=(SIZE, SIZE, 3), backbone="VGG16", weights=tmp_path / VGG16_FILE)
