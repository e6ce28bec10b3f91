import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from mslesion.cli import main
from mslesion.data.prep import PrepConfig, prepare_dataset
from mslesion.data.reader import open_case, read_manifest
from mslesion.data.slicing import to_native_volume

from .conftest import LGG, LJUBLJANA, phantom, requires, write_muslim_patient, write_nifti


def no_temp_left(root):
    return not [p for p in root.rglob("*") if ".tmp" in p.name or p.name.endswith(".old")]


def test_prepare_muslim_cohort_end_to_end(muslim_cohort, tmp_path):
    out = tmp_path / "slices"
    summary = prepare_dataset(muslim_cohort, out, PrepConfig(size=(32, 32)), progress=False)
    assert (summary.patients, len(summary.failures)) == (3, 0)
    manifest = read_manifest(out)
    assert list(manifest.patient.unique()) == ["1", "2", "3"]
    # the phantom has lesions on axial slices 3..6 of each patient
    assert summary.slices == summary.lesion_slices == 12
    image, mask, meta = open_case(out, "2")
    assert isinstance(image, np.memmap) and image.shape == (4, 32, 32, 1) and image.dtype == np.float32
    assert mask.shape == (4, 32, 32, 1) and mask.dtype == np.uint8
    assert meta["slice_indices"] == [3, 4, 5, 6] and meta["source"]["axcodes"] == ["L", "P", "S"]
    assert (manifest.lesion_pixels > 0).all()
    config = json.loads((out / "prep_config.json").read_text())
    assert config["normalisation"] == "zscore" and config["size"] == [32, 32] and config["layout_found"] == "muslim"
    splits = json.loads((out / "splits.json").read_text())
    assert sorted(splits["folds"][0]["train"] + splits["folds"][0]["test"]) == ["1", "2", "3"]
    assert no_temp_left(out)


def test_raw_float_intensities_survive_exactly(tmp_path):
    """Without resizing or normalisation the saved slices are the voxels, bit for bit."""
    image, mask = phantom((32, 32, 8))
    write_nifti(tmp_path / "raw" / "Patient-9" / "9-Flair.nii.gz", image)
    write_nifti(tmp_path / "raw" / "Patient-9" / "9-LesionSeg-Flair.nii.gz", mask)
    out = tmp_path / "s"
    prepare_dataset(tmp_path / "raw", out, PrepConfig(size=(32, 32), normalisation="none", selection="all"),
                    progress=False)  # fmt: skip
    saved, saved_mask, meta = open_case(out, "9")
    np.testing.assert_array_equal(to_native_volume(saved, meta), image)
    np.testing.assert_array_equal(to_native_volume(saved_mask, meta, "mask"), mask)


def test_bad_patients_are_reported_and_the_rest_prepared(tmp_path):
    raw = tmp_path / "raw"
    for pid in "12345678":
        write_muslim_patient(raw, pid, seed=int(pid), modalities=("Flair",))
    image, mask = phantom()
    # 2: truncated image; 3: mask of another shape; 4: NaN; 5: label map; 6: empty mask;
    # 7: no mask at all; 8: 4D image
    f2 = raw / "Patient-2" / "2-Flair.nii.gz"
    f2.write_bytes(f2.read_bytes()[:300])
    write_nifti(raw / "Patient-3" / "3-LesionSeg-Flair.nii.gz", mask[:, :, :8])
    nan = image.copy()
    nan[0, 0, 0] = np.nan
    write_nifti(raw / "Patient-4" / "4-Flair.nii.gz", nan)
    write_nifti(raw / "Patient-5" / "5-LesionSeg-Flair.nii.gz", mask * 2 + (mask > 0))
    write_nifti(raw / "Patient-6" / "6-LesionSeg-Flair.nii.gz", np.zeros_like(mask))
    (raw / "Patient-7" / "7-LesionSeg-Flair.nii.gz").unlink()
    write_nifti(raw / "Patient-8" / "8-Flair.nii.gz", np.stack([image, image], -1))
    out = tmp_path / "slices"
    summary = prepare_dataset(raw, out, PrepConfig(size=(32, 32)), jobs=2, progress=False)
    failures = {f["patient"]: f for f in summary.failures}
    assert summary.patients == 1 and sorted(failures) == list("2345678")
    expected = {
        "2": ("CorruptFileError", "2-Flair.nii.gz"),
        "3": ("ShapeMismatchError", "3-LesionSeg-Flair.nii.gz"),
        "4": ("NonFiniteError", "4-Flair.nii.gz"),
        "5": ("NonBinaryMaskError", "5-LesionSeg-Flair.nii.gz"),
        "6": ("EmptyMaskError", "6-LesionSeg-Flair.nii.gz"),
        "7": ("MissingModalityError", "no flair lesion mask"),
        "8": ("NotThreeDError", "8-Flair.nii.gz"),
    }
    for pid, (error, text) in expected.items():
        assert failures[pid]["error"] == error and text in failures[pid]["message"], failures[pid]
    assert set(read_manifest(out).patient) == {"1"}
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["1"]
    assert len(pd.read_csv(out / "failures.csv")) == 7
    assert no_temp_left(out)
    # allowing empty masks lets patient 6 through with zero lesion slices
    summary = prepare_dataset(raw, out, PrepConfig(size=(32, 32), allow_empty_masks=True), progress=False,
                              overwrite=True)  # fmt: skip
    assert "6" not in {f["patient"] for f in summary.failures}, summary.failures


def test_failed_rerun_keeps_previous_dataset(muslim_cohort, tmp_path, monkeypatch):
    out = tmp_path / "slices"
    prepare_dataset(muslim_cohort, out, PrepConfig(size=(32, 32)), progress=False)
    before = (out / "manifest.csv").read_text()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("mslesion.data.prep.save_csv", boom)  # dies while writing the manifest
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(muslim_cohort, out, PrepConfig(size=(16, 16)), progress=False, overwrite=True)
    assert (out / "manifest.csv").read_text() == before
    assert no_temp_left(tmp_path)


def test_multimodal_2p5d_channels(muslim_cohort, tmp_path):
    out = tmp_path / "s"
    cfg = PrepConfig(modalities=("flair", "t1", "t2"), context=3, size=(24, 24), selection="brain")
    prepare_dataset(muslim_cohort, out, cfg, progress=False)
    image, _, meta = open_case(out, "1")
    assert image.shape[-1] == 9 and meta["channels"][:3] == ["flair[-1]", "flair[+0]", "flair[+1]"]
    assert len(meta["slice_indices"]) > 4  # brain slices include lesion-free ones


def test_modalities_on_different_grids_refused(tmp_path):
    raw = tmp_path / "raw"
    folder = write_muslim_patient(raw, "1", modalities=("Flair", "T1"))
    write_nifti(folder / "1-T1.nii.gz", phantom((40, 48, 12))[0])
    summary = prepare_dataset(raw, tmp_path / "s", PrepConfig(modalities=("flair", "t1")), progress=False)
    (failure,) = summary.failures
    assert failure["error"] == "ShapeMismatchError" and "1-T1.nii.gz" in failure["message"]


def test_cli_prep_and_split(muslim_cohort, tmp_path, capsys):
    out = tmp_path / "s"
    rc = main(["prep", str(muslim_cohort), str(out), "--size", "32", "32", "--selection", "entropy",
               "--entropy-threshold", "0.5", "--no-progress", "--split", "kfold", "--folds", "3"])  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert "patients: 3 prepared, 0 failed" in printed
    assert len(json.loads((out / "splits.json").read_text())["folds"]) == 3
    split = ["split", str(out), "--mode", "train_val_test", "--test-fraction", "0.34", "--val-fraction", "0.5"]
    assert main(split) == 2  # a dataset's splits are replaced only when asked
    assert "pass --overwrite" in capsys.readouterr().err
    assert main([*split, "--overwrite"]) == 0
    fold = json.loads((out / "splits.json").read_text())["folds"][0]
    assert len(fold["train"]) == len(fold["val"]) == len(fold["test"]) == 1
    assert main(["prep", str(tmp_path / "nothing"), str(out), "--overwrite"]) == 2
    assert "dataset folder does not exist" in capsys.readouterr().err


@requires(LJUBLJANA)
@pytest.mark.real
def test_ljubljana_lesion_slices_and_inverse(tmp_path):
    out = tmp_path / "lj"
    summary = prepare_dataset(LJUBLJANA, out, PrepConfig(), progress=False)
    gold = nib.load(str(next(LJUBLJANA.glob("GOLD*")))).get_fdata() > 0.5
    assert summary.slices == int(gold.any(axis=(0, 1)).sum())  # LAS: axial = 3rd file axis
    _, mask, meta = open_case(out, "patient07")
    back = to_native_volume(mask, meta, "mask")
    assert back.shape == gold.shape
    # 218x182 is padded to 218x218 and enlarged to 256: nearest neighbour is exact both ways.
    np.testing.assert_array_equal(back.astype(bool), gold)


@requires(LGG)
@pytest.mark.real
def test_lgg_tiff_cases(tmp_path):
    out = tmp_path / "lgg"
    cfg = PrepConfig(modalities=("pre", "flair", "post"), selection="all", size=(128, 128))
    summary = prepare_dataset(LGG, out, cfg, progress=False)
    assert summary.patients == 2 and not summary.failures
    manifest = read_manifest(out)
    for pid, group in manifest.groupby("patient"):
        folder = LGG / pid
        assert len(group) == len(list(folder.glob("*_mask.tif")))
        assert group.image_file.str.endswith(".tif").all()
    image, mask, meta = open_case(out, "TCGA_CS_4941_19960909")
    assert image.shape[1:] == (128, 128, 3) and meta["channels"] == ["pre", "flair", "post"]
    assert meta["source"]["affine"] is None


@requires(LGG)
@pytest.mark.real
def test_lgg_unreadable_tiff_and_missing_mask_reported(tmp_path):
    import shutil

    raw = tmp_path / "lgg"
    for case in ("TCGA_CS_4941_19960909", "TCGA_DU_5849_19950405"):
        shutil.copytree(LGG / case, raw / case)
    (raw / "TCGA_CS_4941_19960909" / "TCGA_CS_4941_19960909_3.tif").write_bytes(b"II*\x00garbage")
    (raw / "TCGA_DU_5849_19950405" / "TCGA_DU_5849_19950405_2_mask.tif").unlink()
    summary = prepare_dataset(raw, tmp_path / "s", PrepConfig(), progress=False)
    failures = {f["patient"]: f for f in summary.failures}
    assert failures["TCGA_CS_4941_19960909"]["error"] == "CorruptFileError"
    assert "_3.tif" in failures["TCGA_CS_4941_19960909"]["message"]
    assert failures["TCGA_DU_5849_19950405"]["error"] == "MissingMaskError"


def test_prep_config_is_its_three_concerns_and_round_trips_flat():
    from dataclasses import asdict, fields

    from mslesion.data.loading import SourceConfig
    from mslesion.data.slicing import SliceConfig
    from mslesion.data.splits import SplitConfig

    parts = (SourceConfig, SliceConfig, SplitConfig)
    names = [f.name for cls in parts for f in fields(cls)]
    assert len(names) == len(set(names)) and sorted(names) == sorted(f.name for f in fields(PrepConfig))
    config = PrepConfig(modalities=["flair", "t2"], size=(64, 64), context=3, split="kfold", folds=4)
    assert config.source() == SourceConfig(modalities=("flair", "t2"))
    assert config.slicing() == SliceConfig(size=(64, 64), context=3)
    assert config.splitting() == SplitConfig(split="kfold", folds=4)
    assert PrepConfig.from_dict(json.loads(json.dumps(asdict(config)))) == config
    with pytest.raises(ValueError, match="positive odd number"):
        PrepConfig(context=2)
    with pytest.raises(TypeError, match="bogus"):
        PrepConfig(bogus=1)


def test_prep_flags_are_generated_from_the_config_fields():
    import argparse
    from dataclasses import fields

    from mslesion.cli.options import add_config_flags, config_from_flags

    parser = argparse.ArgumentParser()
    add_config_flags(parser, PrepConfig)
    assert {a.dest for a in parser._actions} - {"help"} == {f.name for f in fields(PrepConfig)}
    assert config_from_flags(parser.parse_args([]), PrepConfig) == PrepConfig()
    args = parser.parse_args(["--size", "32", "48", "--modalities", "flair", "t1", "--image-pattern",
                              "flair={patient}/f.nii.gz", "--image-pattern", "t1={patient}/t1.nii.gz",
                              "--mask-pattern", "flair={patient}/m.nii.gz", "--allow-empty-masks", "--crop", "brain",
                              "--entropy-threshold", "1.5", "--split", "kfold", "--folds", "3"])  # fmt: skip
    assert config_from_flags(args, PrepConfig) == PrepConfig(
        size=(32, 48), modalities=("flair", "t1"), allow_empty_masks=True, crop="brain", entropy_threshold_bits=1.5,
        image_patterns={"flair": "{patient}/f.nii.gz", "t1": "{patient}/t1.nii.gz"},
        mask_patterns={"flair": "{patient}/m.nii.gz"}, split="kfold", folds=3)  # fmt: skip
    with pytest.raises(SystemExit):
        parser.parse_args(["--crop", "skull"])  # choices come from the field's metadata
