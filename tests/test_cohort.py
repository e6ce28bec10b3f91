import pytest

from mslesion.data.cohort import discover_cases
from mslesion.errors import MissingModalityError, NoCasesFoundError

from .conftest import LGG, LJUBLJANA, phantom, requires, write_muslim_patient, write_nifti


def test_muslim_layout_finds_every_modality_and_mask(muslim_cohort):
    found = discover_cases(muslim_cohort)
    assert found.layout == "muslim"
    assert [c.patient_id for c in found.cases] == ["1", "2", "3"]
    case = found.cases[1]
    assert case.image("FLAIR").name == "2-Flair.nii.gz"
    assert case.mask("t2").name == "2-LesionSeg-T2.nii.gz"
    assert set(case.images) == set(case.masks) == {"flair", "t1", "t2"}


def test_muslim_ids_sort_naturally_and_odd_files_are_reported(tmp_path):
    for pid in ("10", "2", "1"):
        write_muslim_patient(tmp_path, pid, modalities=("Flair",))
    (tmp_path / "Patient-2" / "notes.txt").write_text("x")
    write_nifti(tmp_path / "Patient-2" / "2-flair_copy.nii.gz", phantom()[0])
    found = discover_cases(tmp_path, "muslim")
    assert [c.patient_id for c in found.cases] == ["1", "2", "10"]
    assert sorted(p.name for p in found.unmatched) == ["2-flair_copy.nii.gz", "notes.txt"]


def test_missing_modality_is_a_clear_error(tmp_path):
    write_muslim_patient(tmp_path, "4", modalities=("Flair",))
    case = discover_cases(tmp_path).cases[0]
    with pytest.raises(MissingModalityError, match="patient 4 has no t1 image"):
        case.image("T1")


def test_nothing_found(tmp_path):
    with pytest.raises(NoCasesFoundError, match="does not exist"):
        discover_cases(tmp_path / "missing")
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(NoCasesFoundError, match="no known layout"):
        discover_cases(tmp_path)


def test_pattern_layout_with_patient_capture(tmp_path):
    image, mask = phantom()
    for pid in ("a01", "b02"):
        write_nifti(tmp_path / f"sub-{pid}" / "anat" / f"sub-{pid}_FLAIR.nii.gz", image)
        write_nifti(tmp_path / "derivatives" / f"sub-{pid}_lesions.nii.gz", mask)
    write_nifti(tmp_path / "sub-c03" / "anat" / "sub-c03_T1w.nii.gz", image)  # no FLAIR: not a case
    found = discover_cases(
        tmp_path,
        image_patterns={"FLAIR": "sub-{patient}/anat/sub-{patient}_FLAIR.nii.gz"},
        mask_patterns={"flair": "derivatives/sub-{patient}_lesions.nii.gz"},
    )
    assert found.layout == "pattern"
    assert [(c.patient_id, c.image("flair").parent.parent.name, c.mask("flair").name) for c in found.cases] == [
        ("a01", "sub-a01", "sub-a01_lesions.nii.gz"),
        ("b02", "sub-b02", "sub-b02_lesions.nii.gz"),
    ]


def test_pattern_needs_placeholder(tmp_path):
    with pytest.raises(ValueError, match="placeholder"):
        discover_cases(tmp_path, image_patterns={"flair": "*.nii.gz"}, mask_patterns={"flair": "*_m.nii.gz"})


@requires(LJUBLJANA)
@pytest.mark.real
def test_ljubljana_layout_single_patient_folder():
    found = discover_cases(LJUBLJANA)
    assert found.layout == "ljubljana"
    (case,) = found.cases
    assert case.patient_id == "patient07"
    assert set(case.images) == {"flair", "t1", "t1post", "t2"}
    assert case.image("t1").name.startswith("T1_") and case.image("t1post").name.startswith("T1POST_")
    assert {p.name for p in case.masks.values()} == {next(LJUBLJANA.glob("GOLD*")).name}


@requires(LJUBLJANA)
@pytest.mark.real
def test_ljubljana_layout_from_parent_folder():
    found = discover_cases(LJUBLJANA.parent, "ljubljana")
    assert [c.patient_id for c in found.cases] == ["patient07"]


@requires(LGG)
@pytest.mark.real
def test_lgg_layout_pairs_slices_in_number_order():
    found = discover_cases(LGG)
    assert found.layout == "lgg"
    assert [c.patient_id for c in found.cases] == ["TCGA_CS_4941_19960909", "TCGA_DU_5849_19950405"]
    case = found.cases[0]
    numbers = [int(img.stem.rsplit("_", 1)[1]) for img, _ in case.slice_files]
    assert numbers == sorted(numbers) and numbers[0] == 1
    assert all(m is not None and m.name == img.name.replace(".tif", "_mask.tif") for img, m in case.slice_files)
