"""The shared tester of mslesion's native Keras 3 models (as segmentation_models_pytorch's tests/models/base.py).

Every registered ``native.*`` model is listed in :data:`NATIVE` with a small configuration and gets the same
checks: output shape and range, a save/load round trip with identical predictions, a few training steps
under the JAX and PyTorch backends, and a module that does not import TensorFlow. Model-specific behaviour
(attention maps, 2.5D slice handling, the published parameter counts) stays in the model's own test file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from mslesion.models import build_model, count_params, load_model
from mslesion.models.registry import MODELS

from .backends import OTHER_BACKENDS, assert_no_tensorflow, run_under_backend


@dataclass(frozen=True)
class NativeCase:
    name: str
    module: str
    input_shape: tuple[int, ...]
    params: dict = field(default_factory=dict)
    #: code run after the training steps under another backend (``model`` and ``x`` are defined); what it prints
    #: after the losses is handed to ``check_extra``
    extra_code: str = ""
    check_extra: object = None


NATIVE = [
    NativeCase("native.fc_densenet", "mslesion.models.fc_densenet", (32, 32, 3),
               {"growth_rate": 4, "layers_per_block": 1, "blocks": 2, "initial_filters": 8}),
    NativeCase("native.att_unet_pyramid", "mslesion.models.pyramid_att_unet", (16, 16, 2),
               {"filters": (4, 8), "activation": "mish", "norm": "group", "groups": 4},
               extra_code="from mslesion.models.pyramid_att_unet import attention_maps\n"
                          "print(*(m.shape[1] for m in attention_maps(model, x).values()))",
               check_extra=lambda out: out == ["16"]),  # one gate, at the skip resolution
    NativeCase("native.r2_att_unet_3d", "mslesion.models.r2_att_unet_3d", (16, 16, 16, 1), {"filters": (4, 8, 16)}),
]  # fmt: skip
IDS = [c.name for c in NATIVE]


def _registered(case: NativeCase):
    __import__(case.module)  # importing a native model's module registers it
    return build_model(case.name, input_shape=case.input_shape, **case.params)


def _batch(case: NativeCase, n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *case.input_shape)).astype("float32")


def test_every_native_model_is_in_the_shared_tester():
    for case in NATIVE:
        __import__(case.module)
    assert sorted(n for n in MODELS if n.startswith("native.")) == sorted(IDS)


@pytest.mark.parametrize("case", NATIVE, ids=IDS)
def test_outputs_one_probability_per_voxel(case):
    model = _registered(case)
    y = np.asarray(model(_batch(case)))
    assert y.shape == (2, *case.input_shape[:-1], 1)
    assert y.dtype == np.float32 and y.min() >= 0 and y.max() <= 1


@pytest.mark.parametrize("case", NATIVE, ids=IDS)
def test_save_and_load_give_identical_predictions(case, tmp_path):
    model = _registered(case)
    x = _batch(case, 3, seed=1)
    model.save(tmp_path / "m.keras")
    assert '"class_name": "Lambda"' not in json.dumps(model.get_config())  # Lambda layers do not reload safely
    loaded = load_model(tmp_path / "m.keras", compile=False)
    np.testing.assert_array_equal(np.asarray(loaded.predict(x, verbose=0)), np.asarray(model.predict(x, verbose=0)))
    assert count_params(loaded) == count_params(model)


TRAIN_STEPS = """
import numpy as np, keras
import {module}
from mslesion.models import build_model
from mslesion.train.losses import get_loss
keras.utils.set_random_seed(0)
model = build_model({name!r}, input_shape={input_shape!r}, **{params!r})
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=get_loss("bce_dice"))
rng = np.random.default_rng(0)
y = (rng.random((4, *{input_shape!r}[:-1], 1)) > 0.9).astype("float32")
x = (np.repeat(y, {input_shape!r}[-1], axis=-1) + rng.normal(0, 0.3, (4, *{input_shape!r}))).astype("float32")
losses = [float(model.train_on_batch(x, y)) for _ in range(3)]
print(keras.backend.backend(), *losses)
{extra_code}
"""


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
@pytest.mark.parametrize("case", NATIVE, ids=IDS)
def test_trains_under_other_backends(case, backend, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")  # halves JAX's CPU compile time
    code = TRAIN_STEPS.format(module=case.module, name=case.name, input_shape=case.input_shape, params=case.params,
                              extra_code=case.extra_code)  # fmt: skip
    lines = run_under_backend(backend, code).strip().splitlines()
    losses_line = next(line for line in lines if line.startswith(backend + " "))
    losses = [float(v) for v in losses_line.split()[1:]]
    assert len(losses) == 3 and all(math.isfinite(v) and v > 0 for v in losses), losses_line
    assert losses[-1] < losses[0], losses_line  # the same batch three times: the loss goes down
    if case.check_extra is not None:
        assert case.check_extra(lines[-1].split()), lines[-1]


@pytest.mark.parametrize("case", NATIVE, ids=IDS)
def test_module_does_not_import_tensorflow(case):
    assert_no_tensorflow(case.module)
