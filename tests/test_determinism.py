"""``--deterministic``: two training runs in separate processes repeat bit for bit (history and weights)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mslesion.data.prep import PrepConfig, prepare_dataset
from mslesion.data.synthetic import generate_cohort
from mslesion.train import runtime

TIMING = ("seconds", "img_per_s")  # wall-clock columns: never repeat


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("determinism")
    generate_cohort(root / "raw", 4, seed=0, shape=(64, 64, 8), spacing_mm=(3.6, 3.6, 10.0))
    cfg = PrepConfig(size=(32, 32), selection="brain", split="train_val_test", test_fraction=0.25, val_fraction=0.34)
    prepare_dataset(root / "raw", root / "slices", cfg, progress=False)
    return root / "slices"


def _train_cli(dataset: Path, run_dir: Path) -> subprocess.Popen:
    # augmentation on: without op determinism its parallel map draws random numbers in a racy order
    args = [sys.executable, "-m", "mslesion", "train", str(dataset), "--model", "kuc.unet", "--model-param",
            "filter_num=[4,8]", "--epochs", "2", "--batch-size", "4", "--augment", "--deterministic",
            "--run-dir", str(run_dir)]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _weights(path: Path) -> list[np.ndarray]:
    from mslesion.models import load_model

    return [np.asarray(w) for w in load_model(path, compile=False).weights]


@pytest.mark.slow
def test_two_deterministic_runs_in_separate_processes_are_identical(dataset, tmp_path):
    runs = [tmp_path / "a", tmp_path / "b"]
    procs = [_train_cli(dataset, run) for run in runs]  # at the same time: threads compete for the cores
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-3000:]
    histories = [pd.read_csv(run / "history.csv") for run in runs]
    assert len(histories[0]) == 2 and set(TIMING) <= set(histories[0].columns)
    pd.testing.assert_frame_equal(histories[0].drop(columns=list(TIMING)), histories[1].drop(columns=list(TIMING)),
                                  check_exact=True)  # fmt: skip
    for name in ("final.keras", "best.keras"):
        first, second = (_weights(run / name) for run in runs)
        assert len(first) == len(second) > 0
        for a, b in zip(first, second):
            np.testing.assert_array_equal(a, b, err_msg=name)
    for run in runs:
        assert json.loads((run / "config.json").read_text())["deterministic"] is True
        state = json.loads((run / "environment.json").read_text())["determinism"]
        assert state["op_determinism"] is True and isinstance(state["onednn"], bool), state


def test_state_is_recorded_and_off_changes_nothing():
    before = runtime.determinism_state()
    assert runtime.set_deterministic(False) == before
    assert {"op_determinism", "onednn", "intra_op_threads", "inter_op_threads", "schedulable_cpus"} <= set(before)
    assert runtime.environment()["determinism"] == before


def test_enabling_turns_op_determinism_on():
    from tensorflow.python.framework import config

    was_on = config.is_op_determinism_enabled()
    try:
        state = runtime.set_deterministic(True)
        assert state["op_determinism"] is True and config.is_op_determinism_enabled()
    finally:
        if not was_on:
            config.disable_op_determinism()  # leave the rest of the session as it was
