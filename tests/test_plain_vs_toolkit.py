"""benchmarks/plain_vs_toolkit.py: the plain Keras baseline of issue 10 against the toolkit's chain."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "plain_vs_toolkit.py"


def _script():
    spec = importlib.util.spec_from_file_location("plain_vs_toolkit", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plain_preprocessing_is_the_stated_recipe():
    script = _script()
    rng = np.random.default_rng(0)
    flair = np.zeros((40, 30, 4), dtype=np.float32)
    flair[:, :, 1] = rng.uniform(1, 5, (40, 30))  # 1,200 brain voxels: kept
    flair[:20, :20, 2] = rng.uniform(1, 5, (20, 20))  # 400: left out (needs more than 500)
    mask = np.zeros(flair.shape, dtype=bool)
    mask[5:10, 5:10, 1] = True
    keep, images, masks = script.plain_slices(flair, mask, 16)
    assert keep == [1] and images.shape == (1, 16, 16, 1) and masks.shape == (1, 16, 16, 1)
    brain = flair[flair > 0]
    expected = (flair[:, :, 1] - brain.mean()) / brain.std()  # z-score over all brain voxels of the volume
    assert images[0, ..., 0].mean() == pytest.approx(expected.mean(), abs=1e-4)  # area resize keeps the mean
    assert set(np.unique(masks)) == {0.0, 1.0}


def test_variant_option_parses_model_and_training_changes():
    import argparse

    script = _script()
    name, params, options, label = script._variant(argparse.ArgumentParser(),
                                                   "bce_dice:bn_max_momentum=0.99,model.decoder_use_batchnorm=false")
    assert (name, params, options) == ("bce_dice", {"decoder_use_batchnorm": False}, {"bn_max_momentum": 0.99})
    with pytest.raises(SystemExit):
        script._variant(argparse.ArgumentParser(), "nonsense:x=1")


@pytest.mark.slow
def test_plain_vs_toolkit_trains_both_chains_on_the_same_patients(tmp_path):
    from mslesion.data.synthetic import generate_cohort

    generate_cohort(tmp_path / "raw", 3, seed=1, shape=(64, 64, 8), spacing_mm=(3.6, 3.6, 10.0))
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "raw"), "--train", "1", "2", "--eval", "3",
                          "--epochs", "1", "--size", "32", "--batch-size", "4", "--work", str(tmp_path / "work")],
                         capture_output=True, text=True, timeout=900)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads((tmp_path / "work" / "plain_vs_toolkit.json").read_text())
    assert [r["chain"] for r in rows] == ["plain Keras loop", "mslesion bce_dice"]
    assert all(0.0 <= r["Dice 3"] <= 1.0 for r in rows)
    assert "held out" in out.stdout and "train 1 2" in out.stdout
    run = Path(tmp_path / "work" / "runs" / "dataset").glob("*/fold_0")
    (run,) = list(run)
    config = json.loads((run / "config.json").read_text())
    assert config["train_patients"] == ["1", "2"] and config["model_params"]["backbone"] == "mobilenetv2"
    # the held-out patient was scored on its whole volume (the toolkit's own evaluation)
    evaluated = (run / "eval_raw" / "per_patient.csv").read_text()
    assert evaluated.splitlines()[1].startswith("3,")


def test_work_folder_may_not_overlap_the_source_nor_replace_a_table(tmp_path):
    from mslesion.data.synthetic import generate_cohort

    generate_cohort(tmp_path / "raw", 1, seed=1, shape=(32, 32, 4), spacing_mm=(3.6, 3.6, 10.0))
    mine = tmp_path / "work" / "plain_vs_toolkit.json"
    mine.parent.mkdir()
    mine.write_text("my own notes\n")
    before = sorted(p.name for p in (tmp_path / "raw").rglob("*"))
    for work, expected in ((tmp_path / "work", "exists; pass --overwrite"), (tmp_path / "raw" / "w", "overlaps")):
        out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "raw"), "--work", str(work)],
                             capture_output=True, text=True, timeout=300)  # fmt: skip
        assert out.returncode == 2 and expected in out.stderr
    assert mine.read_text() == "my own notes\n" and sorted(p.name for p in (tmp_path / "raw").rglob("*")) == before
