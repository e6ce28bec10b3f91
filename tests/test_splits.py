import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mslesion.data.splits import check_disjoint, load_splits, save_splits, split_patients

patient_lists = st.lists(st.text("abcdefgh0123456789-", min_size=1, max_size=6), min_size=2, max_size=40, unique=True)


@settings(max_examples=150, deadline=None)
@given(
    patients=patient_lists,
    mode=st.sampled_from(["holdout", "train_val_test", "kfold"]),
    test_fraction=st.floats(0.05, 0.5),
    val_fraction=st.floats(0.0, 0.5),
    k=st.integers(2, 10),
    seed=st.integers(0, 2**31),
)
def test_no_split_ever_shares_a_patient_and_none_is_lost(patients, mode, test_fraction, val_fraction, k, seed):
    k = min(k, len(patients))
    s = split_patients(patients, mode, test_fraction=test_fraction, val_fraction=val_fraction, k=k, seed=seed)
    for fold in s["folds"]:
        parts = [set(fold[p]) for p in ("train", "val", "test")]
        assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
        assert set.union(*parts) == set(patients)
        assert fold["train"]
    if mode == "kfold":
        tested = [p for fold in s["folds"] for p in fold["test"]]
        assert sorted(tested) == sorted(patients)  # every patient tested exactly once
    assert split_patients(patients, mode, test_fraction=test_fraction, val_fraction=val_fraction, k=k, seed=seed) == s


def test_holdout_ninety_ten_and_seed_changes_it():
    patients = [str(i) for i in range(1, 61)]
    s = split_patients(patients, "holdout", test_fraction=0.1, seed=0)
    assert len(s["folds"][0]["test"]) == 6 and len(s["folds"][0]["train"]) == 54
    others = {tuple(split_patients(patients, "holdout", seed=seed)["folds"][0]["test"]) for seed in range(1, 6)}
    assert len(others) > 1


def test_train_val_test_sizes():
    s = split_patients([f"p{i}" for i in range(20)], "train_val_test", test_fraction=0.2, val_fraction=0.25)
    fold = s["folds"][0]
    assert (len(fold["train"]), len(fold["val"]), len(fold["test"])) == (12, 4, 4)


def test_save_load_and_refuse_overlap(tmp_path):
    s = split_patients(["a", "b", "c", "d"], "kfold", k=2)
    save_splits(tmp_path / "splits.json", s)
    assert load_splits(tmp_path / "splits.json") == s
    bad = {"folds": [{"train": ["a", "b"], "val": [], "test": ["b"]}]}
    with pytest.raises(ValueError, match="patient b is in both train and test"):
        check_disjoint(bad)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unique"):
        split_patients(["a", "a"])
    with pytest.raises(ValueError, match="k-fold needs"):
        split_patients(["a", "b"], "kfold", k=3)
    with pytest.raises(ValueError, match="unknown split mode"):
        split_patients(["a", "b"], "random")
