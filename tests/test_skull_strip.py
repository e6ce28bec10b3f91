"""Skull stripping at load time: morphology finds a known brain, user masks and HD-BET are read, errors name files."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from mslesion.data.case import Case
from mslesion.data.cohort import discover_cases
from mslesion.data.intensity import foreground_mask
from mslesion.data.loading import SourceConfig, load_case
from mslesion.data.skull_strip import morphology_brain_mask
from mslesion.data.volumes import from_axial_stack
from mslesion.errors import BrainMaskError, ConfigError, DataError, ExternalToolError
from tests.conftest import LJUBLJANA, requires, write_muslim_patient, write_nifti

SPACING = (2.0, 1.0, 1.0)  # (z, h, w) mm of the phantom
AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])  # RAS, so the canonical stack is (z, y flipped, x)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))


def _head(seed: int = 0) -> dict[str, np.ndarray]:
    """A FLAIR-like head as a canonical (Z, H, W) stack with its parts known.

    Brain ellipsoid (semi-axes 30, 36, 30 mm; tissue 90-110, lesions 150, dark ventricles 15), a dark 6-7 mm
    CSF/bone gap (8), a bright 4-5 mm scalp shell (160, fat on FLAIR), and a 4 mm thick bright bridge (an optic
    nerve) across the gap from brain to scalp; Rician-like noise (|N(0, 3)|) everywhere.
    """
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * s for n, s in zip((48, 112, 96), SPACING)], indexing="ij")
    r = np.sqrt((z / 30) ** 2 + (y / 36) ** 2 + (x / 30) ** 2)
    brain = r < 1
    scalp = (r >= 1.2) & (r < 1.33)
    ventricles = ((z / 8) ** 2 + (y / 12) ** 2 + ((np.abs(x) - 7) / 4) ** 2) < 1
    bridge = (np.sqrt(z**2 + y**2) < 2) & (x > 0) & (r < 1.2) & ~brain
    deep = ((z - 6) / 4) ** 2 + ((y + 10) / 4) ** 2 + ((x + 12) / 4) ** 2 < 1
    surface = ((z / 4) ** 2 + ((y - 33) / 3) ** 2 + (x / 4) ** 2 < 1) & brain  # touches the brain's edge
    lesions = deep | surface
    image = np.where(brain, 90 + 20 * rng.random(brain.shape), 0.0)
    image[(r >= 1) & (r < 1.2)] = 8.0
    image[scalp] = 160.0
    image[bridge] = 100.0
    image[ventricles] = 15.0
    image[lesions] = 150.0
    image = np.abs(image + rng.normal(0, 3, image.shape)).astype(np.float32)
    return {"image": image, "brain": brain, "scalp": scalp, "bridge": bridge, "ventricles": ventricles,
            "lesions": lesions, "r": r}  # fmt: skip


def test_morphology_finds_the_brain_inside_the_skull():
    head = _head()
    mask = morphology_brain_mask(head["image"], SPACING)
    assert mask.dtype == bool and mask.shape == head["image"].shape
    assert _dice(mask, head["brain"]) > 0.9  # measured 0.94
    assert not (mask & head["scalp"]).any()  # the scalp ring is gone
    # the bridge is cut: nothing of its outer half (the scalp side of the gap) is left
    assert head["bridge"][head["r"] > 1.1].any() and not (mask & head["bridge"] & (head["r"] > 1.1)).any()
    assert mask[head["ventricles"]].all()  # dark ventricles are inside the brain: holes filled
    assert mask[head["lesions"]].all()
    assert not morphology_brain_mask(np.zeros((4, 8, 8), np.float32)).any()
    with pytest.raises(ValueError, match="3D"):
        morphology_brain_mask(head["image"][0])


def test_morphology_radii_are_in_mm():
    # the same head at half the in-plane resolution: the mask is the same shape in mm
    head = _head()
    coarse = head["image"][:, ::2, ::2]
    mask = morphology_brain_mask(coarse, (2.0, 2.0, 2.0))
    assert _dice(mask, head["brain"][:, ::2, ::2]) > 0.88
    assert not (mask & head["scalp"][:, ::2, ::2]).any()


def _write_case(folder, head, name="flair.nii.gz"):
    return write_nifti(folder / name, from_axial_stack(head["image"], AFFINE), AFFINE)


def test_load_case_zeroes_everything_outside_the_brain(tmp_path):
    head = _head()
    lesion = head["lesions"].copy()
    lesion[24, 56, 86] = True  # one lesion voxel in the scalp: kept in the truth, warned about
    case = Case("p", {"flair": _write_case(tmp_path, head), "t1": _write_case(tmp_path, head, "t1.nii.gz")},
                {"flair": write_nifti(tmp_path / "mask.nii.gz", from_axial_stack(lesion.astype(np.uint8), AFFINE),
                                      AFFINE)}, "pattern")  # fmt: skip
    plain = load_case(case, ("flair", "t1"))
    assert plain.brain_mask is None and not plain.notes
    loaded = load_case(case, source=SourceConfig(modalities=("flair", "t1"), skull_strip="morphology"))
    brain = loaded.brain_mask
    assert brain is not None and _dice(brain, head["brain"]) > 0.9
    assert np.all(loaded.stack[~brain] == 0)  # every modality, exactly 0
    np.testing.assert_array_equal(loaded.stack[brain], plain.stack[brain])  # untouched inside
    np.testing.assert_array_equal(loaded.mask, plain.mask)  # the lesion mask is not altered
    assert any("1 of" in w and "outside the brain mask" in w and "mask.nii.gz" in w for w in loaded.warnings)
    assert any("skull stripped (morphology)" in n for n in loaded.notes)
    # the slicing's foreground="auto" now sees the brain (over 20% zeros: nonzero), not the head with its scalp
    fg = foreground_mask(loaded.stack[..., 0], "auto")
    assert _dice(fg, brain) > 0.99 and not (fg & head["scalp"]).any()
    assert (foreground_mask(plain.stack[..., 0], "auto") & head["scalp"]).any()


@pytest.fixture
def cohort_with_brain_masks(tmp_path):
    """Three Muslim-layout patients, brain masks under <root>/brain_masks/<id>_brain.nii.gz (not beside the images)."""
    root = tmp_path / "raw"
    for pid in ("1", "2", "3"):
        write_muslim_patient(root, pid, seed=int(pid), modalities=("Flair",))
    brain = np.zeros((40, 48, 10), np.uint8)
    brain[4:36, 4:44, 1:9] = 1
    for pid in ("1", "2"):
        write_nifti(root / "brain_masks" / f"{pid}_brain.nii.gz", brain)
    return root, brain


def test_user_brain_masks_are_found_for_any_layout(cohort_with_brain_masks):
    root, brain = cohort_with_brain_masks
    case = discover_cases(root).cases[0]
    assert case.layout == "muslim" and case.root == root
    source = SourceConfig(skull_strip="mask", brain_mask_pattern="brain_masks/{patient}_*.nii.gz")
    loaded = load_case(case, source=source)
    assert loaded.brain_mask.sum() == brain.sum()
    assert np.all(loaded.stack[~loaded.brain_mask] == 0)
    assert any("1_brain.nii.gz" in n for n in loaded.notes)


@pytest.mark.parametrize("problem, match", [
    ("missing", r"brain_masks/3_brain.nii.gz: no brain mask file for patient 3"),
    ("empty", r"3_brain.nii.gz: brain mask is empty"),
    ("grid", r"3_brain.nii.gz: brain mask shape \(20, 48, 10\) differs from image 3-Flair.nii.gz.*must lie on"),
    ("labels", r"3_brain.nii.gz: not a usable brain mask \(mask is not binary"),
])  # fmt: skip
def test_bad_brain_masks_name_the_file(cohort_with_brain_masks, problem, match):
    root, brain = cohort_with_brain_masks
    target = root / "brain_masks" / "3_brain.nii.gz"
    if problem == "empty":
        write_nifti(target, np.zeros_like(brain))
    elif problem == "grid":
        write_nifti(target, brain[:20])
    elif problem == "labels":
        write_nifti(target, brain * 3)
    case = [c for c in discover_cases(root).cases if c.patient_id == "3"][0]
    with pytest.raises(BrainMaskError, match=match) as caught:
        load_case(case, source=SourceConfig(skull_strip="mask", brain_mask_pattern="brain_masks/{patient}_brain.nii.gz"))
    assert isinstance(caught.value, DataError) and caught.value.path is not None


def test_batch_prep_reports_a_missing_brain_mask_per_patient(cohort_with_brain_masks, tmp_path):
    from mslesion.data.prep import PrepConfig, prepare_dataset

    root, _ = cohort_with_brain_masks
    config = PrepConfig(size=(32, 32), skull_strip="mask", brain_mask_pattern="brain_masks/{patient}_brain.nii.gz")
    summary = prepare_dataset(root, tmp_path / "ds", config, progress=False)
    assert summary.patients == 2
    assert [(f["patient"], f["error"]) for f in summary.failures] == [("3", "BrainMaskError")]
    record = json.loads((tmp_path / "ds" / "prep_config.json").read_text())
    assert record["skull_strip"] == "mask" and record["brain_mask_pattern"] == "brain_masks/{patient}_brain.nii.gz"
    assert PrepConfig.from_dict(record).source().skull_strip == "mask"  # what predict and evaluate load with
    meta = json.loads((tmp_path / "ds" / "1" / "meta.json").read_text())
    assert meta["stack_shape_zhw"] == [10, 48, 40]


@pytest.mark.parametrize("kwargs, match", [
    ({"skull_strip": "mask"}, "give brain_mask_pattern"),
    ({"skull_strip": "mask", "brain_mask_pattern": "brain_masks/brain.nii.gz"}, "no {patient} placeholder"),
    ({"skull_strip": "bet"}, "unknown skull_strip"),
])  # fmt: skip
def test_skull_strip_options_are_checked(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SourceConfig(**kwargs)


def test_predict_needs_the_new_patients_brain_masks():
    from mslesion.data.prep import PrepConfig
    from mslesion.infer.predict import _source_for_new_patients

    masked = PrepConfig(skull_strip="mask", brain_mask_pattern="prep/{patient}.nii.gz")
    with pytest.raises(ConfigError, match="--brain-mask-pattern"):
        _source_for_new_patients(masked, None, "runs/r")
    assert _source_for_new_patients(masked, "new/{patient}.nii.gz", "runs/r").brain_mask_pattern == "new/{patient}.nii.gz"
    with pytest.raises(ConfigError, match="reads no brain mask"):
        _source_for_new_patients(PrepConfig(skull_strip="morphology"), "new/{patient}.nii.gz", "runs/r")
    assert _source_for_new_patients(PrepConfig(skull_strip="morphology"), None, "runs/r").skull_strip == "morphology"


def test_predict_flag_and_prep_flags_exist():
    import argparse

    from mslesion.cli.data import add_prep
    from mslesion.cli.evaluate import add_predict

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    add_prep(sub)
    add_predict(sub)
    a = parser.parse_args(["prep", "src", "out", "--skull-strip", "morphology", "--register", "rigid"])
    assert (a.skull_strip, a.register, a.brain_mask_pattern) == ("morphology", "rigid", None)
    with pytest.raises(SystemExit):
        parser.parse_args(["prep", "src", "out", "--skull-strip", "bet"])
    a = parser.parse_args(["predict", "run", "in", "out", "--brain-mask-pattern", "{patient}/brain.nii.gz"])
    assert a.brain_mask_pattern == "{patient}/brain.nii.gz"


def test_hd_bet_missing_says_what_to_install(tmp_path, monkeypatch):
    head = _head()
    case = Case("p", {"flair": _write_case(tmp_path, head)}, {}, "pattern")
    monkeypatch.setattr("mslesion.data.skull_strip.shutil.which", lambda name: None)
    with pytest.raises(ExternalToolError) as caught:
        load_case(case, with_mask=False, source=SourceConfig(skull_strip="hd-bet"))
    message = str(caught.value)
    assert "\n" not in message
    for part in ("Isensee et al. 2019", "pip install hd-bet", "internet", "'morphology'", "'mask'"):
        assert part in message


def _fake_hd_bet(folder, body: str):
    """An ``hd-bet`` executable on PATH: a Python script that runs ``body`` with ``args`` (its argv)."""
    folder.mkdir()
    exe = folder / "hd-bet"
    exe.write_text(f"#!{sys.executable}\nimport sys\nargs = sys.argv[1:]\n{body}\n")
    exe.chmod(0o755)
    return exe


def test_hd_bet_is_run_through_its_command_line(tmp_path, monkeypatch):
    head = _head()
    case = Case("p", {"flair": _write_case(tmp_path, head)}, {}, "pattern")
    log = tmp_path / "args.json"
    # HD-BET 2 writes the stripped image at -o and, with --save_bet_mask, the mask beside it as <out>_bet.nii.gz
    _fake_hd_bet(tmp_path / "bin", f"""
import json, nibabel as nib, numpy as np
json.dump(args, open({str(log)!r}, "w"))
img = nib.load(args[args.index("-i") + 1])
out = args[args.index("-o") + 1]
brain = (np.asanyarray(img.dataobj) > 50).astype(np.uint8)
nib.save(nib.Nifti1Image(brain, img.affine), out.replace(".nii.gz", "_bet.nii.gz"))
nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj) * brain, img.affine), out)
""")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:" + os.environ["PATH"])
    loaded = load_case(case, with_mask=False, source=SourceConfig(skull_strip="hd-bet"))
    args = json.loads(log.read_text())
    assert args[args.index("-device") + 1] == "cpu" and "--save_bet_mask" in args
    np.testing.assert_array_equal(loaded.brain_mask, head["image"] > 50)
    assert np.all(loaded.stack[~loaded.brain_mask] == 0)
    given = Path(args[args.index("-i") + 1])
    assert given.name == "image.nii.gz" and not given.parent.exists()  # our temporary folder, removed after


def test_hd_bet_failing_says_why_and_what_to_do(tmp_path, monkeypatch):
    case = Case("p", {"flair": _write_case(tmp_path, _head())}, {}, "pattern")
    _fake_hd_bet(tmp_path / "bin", "sys.stderr.write('Traceback ...\\nURLError: cannot download the weights\\n')\n"
                                   "sys.exit(1)")  # fmt: skip
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:" + os.environ["PATH"])
    with pytest.raises(ExternalToolError, match=r"flair.nii.gz: hd-bet failed \(exit 1: URLError: cannot download "
                                                r"the weights\).*pip install hd-bet.*'morphology'"):  # fmt: skip
        load_case(case, with_mask=False, source=SourceConfig(skull_strip="hd-bet"))


def test_tiff_slices_refuse_it(tmp_path):
    case = Case("lgg1", {}, {}, "lgg", [(tmp_path / "a_1.tif", None)])
    with pytest.raises(ConfigError, match="TIFF slices"):
        load_case(case, source=SourceConfig(modalities=("flair",), skull_strip="morphology"))


@requires(LJUBLJANA)
@pytest.mark.real
def test_morphology_keeps_an_already_stripped_brain():
    # Ljubljana 07 was skull-stripped by its providers: the mask must keep (nearly) all of it, and every lesion
    loaded = load_case(discover_cases(LJUBLJANA).cases[0], ("flair",))
    image = loaded.stack[..., 0]
    mask = morphology_brain_mask(image, loaded.spacing_zhw_mm)
    nonzero = image != 0
    assert (mask & nonzero).sum() > 0.95 * nonzero.sum()  # measured 97.8%
    assert (mask & ~nonzero).sum() < 0.05 * nonzero.sum()  # and adds little (2.5%)
    assert loaded.mask.any() and not (loaded.mask & ~mask).any()
