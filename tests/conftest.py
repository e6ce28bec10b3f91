"""Shared fixtures: tiny NIfTI patients written on the fly, and the real samples."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LJUBLJANA = SHARED_DATA / "ms_ljubljana_patient07"
LGG = SHARED_DATA / "lgg_kaggle_3m"

LPS_AFFINE = np.array([[-1.2, 0, 0, 30.0], [0, -1.1, 0, 25.0], [0, 0, 4.0, -20.0], [0, 0, 0, 1]])


def requires(path: Path):
    """Skip a test when a real sample is absent (a clone without ../shared)."""
    return pytest.mark.skipif(not path.exists(), reason=f"real sample {path} not present (../shared/data absent)")


def phantom(shape=(40, 48, 10), seed=0) -> tuple[np.ndarray, np.ndarray]:
    """A bright-lesion ellipsoid 'head' on a noisy background; lesions on a few slices."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    head = (x / 0.8) ** 2 + (y / 0.85) ** 2 + (z / 1.3) ** 2 < 1
    image = np.where(head, 100.0, 0.0) + rng.normal(0, 3, shape)
    mask = np.zeros(shape, np.uint8)
    mask[18:23, 20:26, 3:6] = 1
    mask[10:12, 30:33, 6] = 1
    image[mask > 0] = 180.0
    return image.astype(np.float32), mask


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray = LPS_AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def write_muslim_patient(root: Path, pid: str, seed: int = 0, shape=(40, 48, 10), modalities=("Flair", "T1", "T2"),
                         suffix: str = ".nii.gz"):  # fmt: skip
    """Write Patient-<pid>/<pid>-<Mod>.nii.gz and <pid>-LesionSeg-<Mod>.nii.gz (``suffix=".nii"``: uncompressed)."""
    image, mask = phantom(shape, seed)
    folder = root / f"Patient-{pid}"
    for i, mod in enumerate(modalities):
        write_nifti(folder / f"{pid}-{mod}{suffix}", image * (1 + 0.1 * i))
        write_nifti(folder / f"{pid}-LesionSeg-{mod}{suffix}", mask)
    return folder


def write_kaggle_input(input_root: Path, patients: int = 3, shape=(40, 48, 10)) -> Path:
    """A read-only Kaggle input in the layout the Muslim et al. data is shipped in; returns the cohort folder.

    ``<input>/ms-dataset/MS Dataset/Patient-<i>/<i>-Flair.nii`` (uncompressed, folders with
    spaces), with the patient information spreadsheet beside the patient folders.
    """
    cohort = input_root / "ms-dataset" / "MS Dataset"
    for i in range(1, patients + 1):
        write_muslim_patient(cohort, str(i), seed=i, shape=shape, suffix=".nii")
    (cohort / "Supplementary Table 1 for patient info .xlsx").write_bytes(b"PK\x03\x04 not read")
    for path in sorted(input_root.rglob("*"), reverse=True):
        path.chmod(0o555 if path.is_dir() else 0o444)
    input_root.chmod(0o555)
    return cohort


@pytest.fixture
def muslim_cohort(tmp_path) -> Path:
    root = tmp_path / "raw"
    for i in range(1, 4):
        write_muslim_patient(root, str(i), seed=i)
    return root


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A small U-Net trained for a few epochs on 8 synthetic patients at 64x64 (~10 s), shared by the
    evaluation and report tests."""
    from mslesion.data.quick import quick_synthetic_dataset
    from mslesion.train.training import train

    root = tmp_path_factory.mktemp("trained")
    quick_synthetic_dataset(root / "slices", 8, test_fraction=0.25, val_fraction=0.2, raw=root / "raw")
    return train({"dataset": str(root / "slices"), "runs_root": str(root / "runs"), "model": "kuc.unet",
                  "model_params": {"filter_num": [16, 32, 64]}, "loss": "dice", "learning_rate": 3e-3,
                  "epochs": 6, "batch_size": 8}, verbose=0)  # fmt: skip


def copy_run(run: Path, dest: Path) -> Path:
    """A private copy of a run folder (its evaluations left out), for tests that write into a run:
    the session's ``trained_run`` itself is never changed."""
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("eval_*", ".eval_*"))
    return dest


# The files that take longest (minutes each on 2 CPU cores) go first, so that `make test`'s two
# xdist workers (--dist loadfile) do not end with one long file running alone.
SLOW_FILES = ("test_notebooks.py", "test_fc_densenet.py", "test_training.py", "test_models.py")


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FILES)))  # stable: the rest keep their order
