"""Using the accelerator: one strategy per session, mixed precision where it pays, static batch shapes for TPUs.

No GPU or TPU here: the policy is chosen by a function of the device description, and the
static-shape path runs under a 2-replica MirroredStrategy over logical CPUs.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from mslesion.train import runtime

T4 = {"kind": "GPU", "name": "Tesla T4", "compute_capability": (7, 5)}
P100 = {"kind": "GPU", "name": "Tesla P100-PCIE-16GB", "compute_capability": (6, 0)}
H100 = {"kind": "GPU", "name": "NVIDIA H100 80GB HBM3", "compute_capability": (9, 0)}
TPU = {"kind": "TPU", "name": "/device:TPU:0", "compute_capability": None}


@pytest.mark.parametrize("devices, policy", [
    ([T4], "mixed_float16"), ([T4, T4], "mixed_float16"), ([H100], "mixed_float16"),
    ([P100], "float32"),  # no tensor cores: float16 does not pay
    ([T4, P100], "float32"),  # one slow GPU holds the others back
    ([TPU] * 8, "mixed_bfloat16"), ([], "float32"),
])  # fmt: skip
def test_mixed_precision_policy_per_device_kind(devices, policy):
    assert runtime.mixed_precision_policy(devices) == policy


def test_this_cpu_machine_gets_no_mixed_precision():
    assert runtime.describe_devices() == [] and runtime.auto_mixed_precision() is False


def test_one_strategy_per_session():
    assert runtime.pick_strategy("auto") is runtime.pick_strategy("auto")


def test_input_pipeline_gathers_in_the_graph_only_for_an_accelerator_with_slices_in_memory():
    gpu = [{"kind": "GPU", "name": "Tesla T4", "compute_capability": (7, 5)}]
    assert runtime.input_pipeline("auto", gpu, in_memory=True) == "graph"
    assert runtime.input_pipeline("auto", gpu, in_memory=False) == "generator"
    assert runtime.input_pipeline("auto", [], in_memory=True) == "generator"
    assert runtime.input_pipeline("graph", [], in_memory=False) == "graph"
    with pytest.raises(ValueError, match="auto, graph or generator"):
        runtime.input_pipeline("fast", [], True)


def test_only_a_tpu_strategy_needs_static_shapes():
    class TPUStrategy:  # the name is what counts: no TPU library needed to tell
        pass

    import tensorflow as tf

    assert runtime.needs_static_shapes(TPUStrategy()) is True
    assert runtime.needs_static_shapes(tf.distribute.get_strategy()) is False


def test_dropped_remainder_gives_a_static_batch_dimension():
    from mslesion.train.datasets import SliceSet, make_dataset

    rng = np.random.default_rng(0)
    images = rng.normal(size=(10, 16, 16, 1)).astype(np.float32)
    masks = (rng.random((10, 16, 16, 1)) > 0.9).astype(np.uint8)
    index = np.stack([np.zeros(10, int), np.arange(10)], axis=1)
    slices = SliceSet([images], [masks], index, masks.any(axis=(1, 2, 3)), ["p"])
    ds = make_dataset(slices, 4, drop_remainder=True)
    assert ds.element_spec[0].shape[0] == 4 and [len(x) for x, _ in ds] == [4, 4]
    assert make_dataset(slices, 4).element_spec[0].shape[0] is None


@pytest.mark.slow
def test_static_shapes_under_a_two_replica_strategy_on_split_cpu(tmp_path):
    from mslesion.data.prep import PrepConfig, prepare_dataset
    from mslesion.data.synthetic import generate_cohort

    generate_cohort(tmp_path / "raw", 4, seed=0, shape=(64, 64, 9), spacing_mm=(3.6, 3.6, 10.0))
    prepare_dataset(tmp_path / "raw", tmp_path / "ds", PrepConfig(size=(32, 32), selection="all",
                    split="train_val_test", test_fraction=0.25, val_fraction=0.25), progress=False)  # fmt: skip
    cfg = {"dataset": str(tmp_path / "ds"), "model": "kuc.unet", "model_params": {"filter_num": [8, 16]},
           "batch_size": 4, "epochs": 1, "strategy": "mirrored", "run_dir": str(tmp_path / "run"),
           "input_pipeline": "graph", "augment": True, "augment_on": "device"}  # fmt: skip
    code = f"""
import json, tensorflow as tf
cpu = tf.config.list_physical_devices('CPU')[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from mslesion.train import runtime, training
from mslesion.train.datasets import load_slice_set, make_dataset
runtime.needs_static_shapes = lambda strategy: True  # as under TPUStrategy
strategy = runtime.pick_strategy("mirrored")
slices = load_slice_set({str(tmp_path / 'ds')!r}, ["1", "2"])
ds = strategy.experimental_distribute_dataset(make_dataset(slices, 8, drop_remainder=True, source="graph"))
shapes = sorted({{tuple(t.shape) for batch in ds for t in strategy.experimental_local_results(batch[0])}})
training.train(json.loads({json.dumps(json.dumps(cfg))}), verbose=0)
print("SHAPES", json.dumps(shapes), len(slices))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("SHAPES"))
    shapes, n = json.loads(line.split(" ", 1)[1].rsplit(" ", 1)[0]), int(line.rsplit(" ", 1)[1])
    assert n % 8 != 0  # there is a partial batch to drop
    assert shapes == [[4, 32, 32, 1]]  # every replica gets a full per-replica batch
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["static_batch_shapes"] is True and recorded["replicas"] == 2
    assert recorded["batch_size_per_replica"] == 4 and recorded["global_batch_size"] == 8
    assert recorded["input_pipeline_used"] == "graph"
    assert recorded["augment_on_used"] == "device"  # the paired augmentation ran in each replica's train step
