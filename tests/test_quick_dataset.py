"""One call makes a small prepared synthetic dataset (demo, notebooks, tests)."""

import json

import pytest

from mslesion.data.quick import quick_synthetic_dataset
from mslesion.data.reader import open_case, read_manifest
from mslesion.outputs import OutputError


def test_prepares_a_split_dataset_of_the_asked_size(tmp_path):
    summary = quick_synthetic_dataset(tmp_path / "ds", 4, size=32, shape=(64, 64, 8), spacing_mm=(3.6, 3.6, 10.0),
                                      test_fraction=0.25, val_fraction=0.34, seed=3)  # fmt: skip
    assert summary.out_dir == tmp_path / "ds"
    assert (tmp_path / "ds.raw" / "cohort.json").is_file()
    manifest = read_manifest(tmp_path / "ds")
    assert sorted(manifest.patient.unique()) == ["1", "2", "3", "4"]
    image, mask, _ = open_case(tmp_path / "ds", "1")
    assert image.shape[1:3] == (32, 32) and mask.shape[1:3] == (32, 32)
    split = json.loads((tmp_path / "ds" / "splits.json").read_text())["folds"][0]
    assert len(split["test"]) == 1 and split["val"] and set(split["train"]).isdisjoint(split["test"])


def test_the_same_seed_gives_the_same_data_and_existing_output_needs_overwrite(tmp_path):
    args = dict(size=32, shape=(48, 48, 6), spacing_mm=(4.0, 4.0, 10.0), seed=1)
    quick_synthetic_dataset(tmp_path / "a", 3, **args)
    quick_synthetic_dataset(tmp_path / "b", 3, **args)
    assert (open_case(tmp_path / "a", "2")[0] == open_case(tmp_path / "b", "2")[0]).all()
    with pytest.raises(OutputError):
        quick_synthetic_dataset(tmp_path / "a", 3, **args)
    quick_synthetic_dataset(tmp_path / "a", 3, **args, overwrite=True)
