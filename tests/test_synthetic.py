"""The synthetic MS cohort: layout on disk, determinism, anatomy, lesions, orientation."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from mslesion.data import synthetic as S
from mslesion.fileio import load_json
from mslesion.outputs import MARKER, OutputError

SMALL = (96, 96, 12)
SMALL_SPACING = (2.4, 2.4, 5.0)
DEFAULT = (256, 256, 24)
DEFAULT_SPACING = (0.9, 0.9, 5.0)


def _files(pid: str) -> set[str]:
    names = set()
    for mod in S.MODALITIES:
        names |= {f"{pid}-{mod}.nii.gz", f"{pid}-LesionSeg-{mod}.nii.gz"}
    return names


def _all_names(root) -> list[str]:
    return [name for _, dirs, files in os.walk(root) for name in dirs + files]


@pytest.fixture(scope="module")
def small_patients() -> list[S.SyntheticPatient]:
    """Patients 1..6 of cohort seed 0 at the small test grid."""
    return [S.generate_patient([0, pid], SMALL, SMALL_SPACING) for pid in range(1, 7)]


@pytest.fixture(scope="module")
def default_patients() -> list[S.SyntheticPatient]:
    return [S.generate_patient([0, pid], DEFAULT, DEFAULT_SPACING) for pid in (1, 2, 3)]


# --------------------------------------------------------------------------- files


def test_cohort_layout_names_and_headers(tmp_path):
    folders = S.generate_cohort(tmp_path, n_patients=2, seed=3, shape=SMALL, spacing_mm=SMALL_SPACING)
    assert folders == [tmp_path / "Patient-1", tmp_path / "Patient-2"]
    assert sorted(os.listdir(tmp_path)) == [MARKER, "Patient-1", "Patient-2", "cohort.json"]
    peaks = []
    for folder, pid in zip(folders, ("1", "2")):
        assert set(os.listdir(folder)) == _files(pid)
        patient = S.generate_patient([3, int(pid)], SMALL, SMALL_SPACING)
        affines = []
        for mod in S.MODALITIES:
            img = nib.load(folder / f"{pid}-{mod}.nii.gz")
            msk = nib.load(folder / f"{pid}-LesionSeg-{mod}.nii.gz")
            for x in (img, msk):
                assert x.shape == SMALL
                assert np.allclose(x.header.get_zooms(), SMALL_SPACING)
                assert x.header.get_xyzt_units()[0] == "mm"
                assert int(x.header["qform_code"]) == 1 and int(x.header["sform_code"]) == 1
                assert np.allclose(x.get_qform(), x.affine) and np.allclose(x.get_sform(), x.affine)
                assert nib.aff2axcodes(x.affine) == ("L", "P", "S")
                affines.append(x.affine)
            assert img.get_data_dtype() == np.int16
            assert msk.get_data_dtype() == np.uint8
            data = np.asanyarray(img.dataobj)
            mask = np.asanyarray(msk.dataobj)
            assert data.dtype == np.int16 and mask.dtype == np.uint8
            assert set(np.unique(mask)) <= {0, 1}
            assert data.min() >= 0 and 300 <= data.max() <= 1600
            peaks.append(int(data.max()))
            # What is on disk is exactly what generate_patient returns.
            np.testing.assert_array_equal(data, patient.images[mod])
            np.testing.assert_array_equal(mask, patient.masks[mod])
        assert all(np.array_equal(a, affines[0]) for a in affines)
        np.testing.assert_allclose(affines[0], patient.affine)
    assert len(set(peaks)) > 1  # the scaling varies per patient and modality
    assert not [n for n in _all_names(tmp_path) if ".tmp" in n or (n.startswith(".") and n != MARKER)]


def test_start_id_names(tmp_path):
    folders = S.generate_cohort(tmp_path, n_patients=2, seed=0, shape=SMALL, spacing_mm=SMALL_SPACING, start_id=5)
    assert [f.name for f in folders] == ["Patient-5", "Patient-6"]
    assert set(os.listdir(folders[0])) == _files("5")
    meta = load_json(tmp_path / "cohort.json")
    assert [p["id"] for p in meta["patients"]] == ["5", "6"]


def test_cohort_json_matches_arrays(tmp_path):
    S.generate_cohort(tmp_path, n_patients=3, seed=11, shape=SMALL, spacing_mm=SMALL_SPACING)
    meta = load_json(tmp_path / "cohort.json")
    assert meta["generator"] == S.GENERATOR and meta["version"] == S.GENERATOR_VERSION
    assert meta["n_patients"] == 3 and meta["seed"] == 11
    assert tuple(meta["shape"]) == SMALL and tuple(meta["spacing_mm"]) == SMALL_SPACING
    assert len(meta["patients"]) == 3
    for entry in meta["patients"]:
        pid = entry["id"]
        folder = tmp_path / f"Patient-{pid}"
        counts = {
            mod: int(np.asanyarray(nib.load(folder / f"{pid}-LesionSeg-{mod}.nii.gz").dataobj).sum())
            for mod in S.MODALITIES
        }
        assert entry["lesion_voxels"] == counts["Flair"] > 0
        assert entry["mask_voxels"] == counts
        assert entry["n_lesions"] == len(S.generate_patient([11, int(pid)], SMALL, SMALL_SPACING).lesions)
        assert entry["lesion_volume_mm3"] == pytest.approx(counts["Flair"] * np.prod(SMALL_SPACING))


def test_existing_patient_refused_without_overwrite(tmp_path):
    S.generate_cohort(tmp_path, n_patients=1, seed=0, shape=SMALL, spacing_mm=SMALL_SPACING)
    before = (tmp_path / "Patient-1" / "1-Flair.nii.gz").stat().st_mtime_ns
    with pytest.raises(OutputError, match="already holds an mslesion cohort; pass --overwrite"):
        S.generate_cohort(tmp_path, n_patients=3, seed=1, shape=SMALL, spacing_mm=SMALL_SPACING)
    # Checked before writing anything: no new patient, old one untouched.
    assert not (tmp_path / "Patient-2").exists()
    assert (tmp_path / "Patient-1" / "1-Flair.nii.gz").stat().st_mtime_ns == before

    S.generate_cohort(tmp_path, n_patients=2, seed=1, shape=SMALL, spacing_mm=SMALL_SPACING, overwrite=True)
    assert not (tmp_path / "Patient-3").exists()  # the cohort is replaced whole, not merged
    replaced = np.asanyarray(nib.load(tmp_path / "Patient-1" / "1-Flair.nii.gz").dataobj)
    np.testing.assert_array_equal(replaced, S.generate_patient([1, 1], SMALL, SMALL_SPACING).images["Flair"])
    assert set(os.listdir(tmp_path / "Patient-2")) == _files("2")
    assert not [n for n in _all_names(tmp_path) if ".tmp" in n or (n.startswith(".") and n != MARKER)]


def test_bad_arguments():
    with pytest.raises(ValueError):
        S.generate_patient(0, shape=(64, 64))
    with pytest.raises(ValueError):
        S.generate_patient(0, shape=SMALL, spacing_mm=(1.0, 0.0, 5.0))
    with pytest.raises(ValueError):
        S.generate_cohort("unused", n_patients=-1)


# --------------------------------------------------------------------------- determinism


def _same(a: S.SyntheticPatient, b: S.SyntheticPatient) -> bool:
    return (
        all(np.array_equal(a.images[m], b.images[m]) and np.array_equal(a.masks[m], b.masks[m]) for m in S.MODALITIES)
        and np.array_equal(a.labels, b.labels)
        and np.array_equal(a.affine, b.affine)
        and a.lesions == b.lesions
    )


def test_same_seed_identical_different_seed_different():
    a = S.generate_patient(7, SMALL, SMALL_SPACING)
    b = S.generate_patient(7, SMALL, SMALL_SPACING)
    c = S.generate_patient(8, SMALL, SMALL_SPACING)
    assert _same(a, b)
    for mod in S.MODALITIES:
        assert a.images[mod].dtype == np.int16 and a.images[mod].shape == SMALL
        assert not np.array_equal(a.images[mod], c.images[mod])
    assert not np.array_equal(a.labels, c.labels)


def test_patient_independent_of_cohort_size(tmp_path):
    S.generate_cohort(tmp_path / "two", n_patients=2, seed=4, shape=SMALL, spacing_mm=SMALL_SPACING)
    S.generate_cohort(tmp_path / "five", n_patients=5, seed=4, shape=SMALL, spacing_mm=SMALL_SPACING)
    for name in _files("2"):
        a = np.asanyarray(nib.load(tmp_path / "two" / "Patient-2" / name).dataobj)
        b = np.asanyarray(nib.load(tmp_path / "five" / "Patient-2" / name).dataobj)
        np.testing.assert_array_equal(a, b)
    p1 = np.asanyarray(nib.load(tmp_path / "five" / "Patient-1" / "1-Flair.nii.gz").dataobj)
    p2 = np.asanyarray(nib.load(tmp_path / "five" / "Patient-2" / "2-Flair.nii.gz").dataobj)
    assert not np.array_equal(p1, p2)


# --------------------------------------------------------------------------- anatomy


def _means(patient: S.SyntheticPatient, mod: str) -> dict[int, float]:
    image = patient.images[mod].astype(np.float64)
    return {lab: float(image[patient.labels == lab].mean()) for lab in (S.CSF, S.GM, S.WM, S.LESION, S.VENTRICLE)}


def test_tissue_contrasts(default_patients):
    for p in default_patients:
        f, t1, t2 = (_means(p, m) for m in S.MODALITIES)
        assert f[S.LESION] > f[S.GM] > f[S.WM] > f[S.CSF]
        assert f[S.WM] > f[S.VENTRICLE]
        assert t1[S.WM] > t1[S.GM] > t1[S.LESION] > t1[S.CSF]
        assert t2[S.CSF] > t2[S.WM] and t2[S.VENTRICLE] > t2[S.WM]
        assert t2[S.LESION] > t2[S.WM] and t2[S.GM] > t2[S.WM]


def test_head_inside_field_of_view_with_realistic_signal(small_patients, default_patients):
    for p in small_patients + default_patients:
        labels = p.labels
        for border in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
            assert (border == S.BACKGROUND).all()
        present = set(np.unique(labels[:, :, labels.shape[2] // 2]))
        assert {S.SCALP, S.SKULL, S.CSF, S.GM, S.WM} <= present
        # Head centre near world (0, 0) in-plane.
        ijk = np.argwhere(labels != S.BACKGROUND)
        centre = p.affine[:3, :3] @ ijk.mean(axis=0) + p.affine[:3, 3]
        assert np.all(np.abs(centre[:2]) < 10)
        for mod in S.MODALITIES:
            img = p.images[mod].astype(np.float64)
            background = img[labels == S.BACKGROUND]
            assert background.std() > 0  # Rician noise floor, not a flat zero
            assert background.mean() < 0.15 * img[labels == S.WM].mean()
            # Texture, bias and noise: white matter is not a flat constant.
            wm = img[labels == S.WM]
            assert 0.02 < wm.std() / wm.mean() < 0.4


# --------------------------------------------------------------------------- lesions


def test_lesions_only_in_white_matter(small_patients, default_patients):
    for p in small_patients + default_patients:
        lesion = p.masks["Flair"].astype(bool)
        assert lesion.any()
        assert (p.healthy_labels[lesion] == S.WM).all()
        assert np.array_equal(p.labels == S.LESION, lesion)
        assert np.array_equal(p.labels[~lesion], p.healthy_labels[~lesion])
        assert np.array_equal(p.masks["T2"], p.masks["Flair"])
        assert 4 <= len(p.lesions) <= 25
        for les in p.lesions:
            assert les["n_voxels"] >= 1
            assert lesion[tuple(les["centre_voxel"])]


def test_t1_mask_is_black_hole_subset(small_patients, default_patients):
    saw_empty_or_partial = False
    for p in small_patients + default_patients:
        t1, flair = p.masks["T1"].astype(bool), p.masks["Flair"].astype(bool)
        assert t1.dtype == bool and not (t1 & ~flair).any()
        voxel_mm3 = float(np.prod(p.spacing_mm))
        big = [les for les in p.lesions if les["n_voxels"] * voxel_mm3 >= S.BLACK_HOLE_MIN_MM3]
        holes = [les for les in p.lesions if les["black_hole"]]
        assert all(les in big for les in holes)
        assert bool(holes) == bool(big) == t1.any()
        saw_empty_or_partial |= t1.sum() < flair.sum()
    assert saw_empty_or_partial  # a subset, not a copy


def test_lesion_sizes_heavy_tailed(small_patients):
    sizes = []
    for p in small_patients:
        labelled, n = ndimage.label(p.masks["Flair"])
        sizes += list(ndimage.sum_labels(p.masks["Flair"], labelled, range(1, n + 1)))
    sizes = np.array(sizes)
    assert len(sizes) >= 30
    assert np.median(sizes) < sizes.mean()
    assert (sizes <= 10).sum() > 3 * (sizes > 50).sum()
    assert (sizes > 50).sum() >= 1  # but some large ones


def test_lesions_periventricular(small_patients):
    near = total = 0
    baselines = []
    for p in small_patients:
        dist = ndimage.distance_transform_edt(p.healthy_labels != S.VENTRICLE, sampling=p.spacing_mm)
        wm = p.healthy_labels == S.WM
        baselines.append(float((dist[wm] <= 12).mean()))  # uniform placement in WM
        labelled, n = ndimage.label(p.masks["Flair"])
        for c in ndimage.center_of_mass(p.masks["Flair"], labelled, range(1, n + 1)):
            total += 1
            near += dist[tuple(np.round(c).astype(int))] <= 12
    uniform = float(np.mean(baselines))
    assert uniform < 0.35
    assert near / total > uniform + 0.2


def test_lesions_span_several_slices(small_patients):
    slices = [int(p.masks["Flair"].any(axis=(0, 1)).sum()) for p in small_patients]
    assert sum(n >= 3 for n in slices) >= 0.7 * len(slices)


# --------------------------------------------------------------------------- orientation


def _ventricle_ends(mask: np.ndarray, affine: np.ndarray) -> tuple[int, int]:
    """Voxels of ``mask`` in the anterior and posterior thirds of its RAS y extent."""
    ijk = np.argwhere(mask)
    y = (affine[:3, :3] @ ijk.T + affine[:3, 3:4])[1]
    lo, hi = np.percentile(y, [2, 98])
    third = (hi - lo) / 3
    return int((y > hi - third).sum()), int((y < lo + third).sum())


@pytest.mark.parametrize("pid", [1, 2, 3])
def test_orientation_frontal_horns_anterior(tmp_path, pid):
    """Reoriented to RAS, the larger (frontal) end of the ventricles lies at +y."""
    S.generate_cohort(tmp_path, n_patients=1, seed=0, shape=SMALL, spacing_mm=SMALL_SPACING, start_id=pid)
    patient = S.generate_patient([0, pid], SMALL, SMALL_SPACING)
    flair = nib.load(tmp_path / f"Patient-{pid}" / f"{pid}-Flair.nii.gz")
    ras = nib.as_closest_canonical(flair)
    assert nib.aff2axcodes(ras.affine) == ("R", "A", "S")
    data = ras.get_fdata()
    aff = ras.affine

    # From the label map, placed on the file's own grid.
    labels = nib.as_closest_canonical(nib.Nifti1Image(patient.labels, flair.affine))
    np.testing.assert_allclose(labels.affine, aff)
    front, back = _ventricle_ends(np.asarray(labels.dataobj) == S.VENTRICLE, aff)
    assert front > 1.3 * back

    # From the image alone: dark (CSF) voxels off the midline near the head centre.
    ii, jj, kk = np.indices(data.shape)
    x, y, z = (aff[a, a] * idx + aff[a, 3] for a, idx in enumerate((ii, jj, kk)))
    head = data > 0.2 * np.percentile(data, 99.5)
    cx, cy, cz = x[head].mean(), y[head].mean(), z[head].mean()
    box = (np.abs(x - cx) > 3) & (np.abs(x - cx) < 25) & (np.abs(y - cy) < 50) & (np.abs(z - cz) < 25)
    dark = box & (data < 0.4 * np.median(data[box & head]))
    front, back = _ventricle_ends(dark, aff)
    assert front > 1.3 * back
