"""A trained run + volumes -> lesion probability volumes, and masks written back as files.

Every axial slice of a volume is prepared exactly as ``mslesion prep``
prepared the training slices (the run's ``prep_config.json``: modalities,
normalisation, size, fit, 2.5D context), predicted in batches, resized back to
the native in-plane grid and restacked; thresholding happens on the native
grid. Masks are written in the source file's own voxel order with its affine
and header (NIfTI), or as one ``*_pred_mask.tif`` per slice for TIFF datasets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .fileio import atomic_path, load_json
from .loading import LoadedCase
from .prep import PrepConfig
from .slicing import slice_case, to_native_stack
from .volumes import from_axial_stack

__all__ = [
    "CHECKPOINTS",
    "TrainedRun",
    "open_run",
    "predict_slices",
    "predict_volume",
    "write_mask",
]

CHECKPOINTS = ("best", "final")


@dataclass
class TrainedRun:
    """A run folder's model and the preparation its inputs need."""

    run_dir: Path
    checkpoint: str
    model: object
    prep: PrepConfig
    config: dict
    prep_record: dict  # prep_config.json as written: also where the volumes came from (source, layout_found)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.model.input_shape[1:])


def run_prep_config(run_dir: str | Path) -> dict:
    """The preparation a run was trained on: its own copy, else its dataset's."""
    run_dir = Path(run_dir)
    own = run_dir / "prep_config.json"
    if own.is_file():
        return load_json(own)
    dataset = Path(load_json(run_dir / "config.json")["dataset"])
    if not (dataset / "prep_config.json").is_file():
        raise FileNotFoundError(
            f"{run_dir}: no prep_config.json in the run and its dataset {dataset} is gone; "
            "copy the dataset's prep_config.json into the run folder"
        )
    return load_json(dataset / "prep_config.json")


def open_run(run_dir: str | Path, checkpoint: str = "best") -> TrainedRun:
    """Load a run's ``best.keras`` (highest val Dice) or ``final.keras`` (BN re-estimated)."""
    from .models import load_model

    run_dir = Path(run_dir)
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint must be one of {CHECKPOINTS}, not {checkpoint!r}")
    path = run_dir / f"{checkpoint}.keras"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint (is the run finished?)")
    record = run_prep_config(run_dir)
    return TrainedRun(run_dir, checkpoint, load_model(path), PrepConfig.from_dict(record),
                      load_json(run_dir / "config.json"), record)  # fmt: skip


def predict_slices(model, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """``(N, S, S, C)`` model-grid slices -> ``(N, S, S)`` float32 lesion probabilities."""
    if len(images) == 0:
        return np.zeros((0, *images.shape[1:3]), np.float32)
    expected = tuple(model.input_shape[1:])
    if tuple(images.shape[1:]) != expected and None not in expected:
        raise ValueError(f"slices have shape {images.shape[1:]} but the model expects {expected}")
    out = model.predict(np.asarray(images, np.float32), batch_size=batch_size, verbose=0)
    return np.asarray(out, np.float32)[..., 0]


def predict_volume(run: TrainedRun, case: LoadedCase, batch_size: int = 16) -> np.ndarray:
    """Lesion probability for every voxel of ``case`` on its canonical ``(Z, H, W)`` stack."""
    kwargs = {**run.prep.slicing_kwargs(), "selection": "all"}
    sliced = slice_case(case.stack, case.mask, case.modalities, case.spacing_zhw_mm, **kwargs)
    if tuple(sliced.images.shape[1:]) != run.input_shape:
        raise ValueError(
            f"patient {case.patient_id}: prepared slices have shape {sliced.images.shape[1:]} but the model of "
            f"{run.run_dir} expects {run.input_shape}; modalities {case.modalities} vs {list(run.prep.modalities)}"
        )
    probs = predict_slices(run.model, sliced.images, batch_size)
    return to_native_stack(probs, sliced.geometry, sliced.slice_indices, case.stack.shape[:3], "probability",
                           sliced.crop_box)  # fmt: skip


def write_mask(mask_zhw: np.ndarray, case: LoadedCase, out: str | Path) -> list[Path]:
    """Write a canonical-stack mask in the source's own format and voxel order.

    NIfTI cases: ``out`` is a ``.nii.gz`` file holding uint8 {0, 1} with the
    source image's affine and header (loadable by nibabel, ITK-SNAP, FSLeyes).
    TIFF cases: ``out`` is a folder receiving ``<slice>_pred_mask.tif`` (0/255)
    beside each source slice name. Every file is written atomically.
    """
    import nibabel as nib

    mask_zhw = np.asarray(mask_zhw).astype(np.uint8)
    out = Path(out)
    if case.affine is None:
        import cv2

        written = []
        for k, src in enumerate(case.image_files):
            path = out / f"{Path(src).stem}_pred_mask.tif"
            with atomic_path(path) as tmp:
                if not cv2.imwrite(str(tmp), mask_zhw[k] * 255):
                    raise OSError(f"{path}: OpenCV could not write the mask")
            written.append(path)
        return written
    data = from_axial_stack(mask_zhw, case.affine)
    header = nib.load(str(case.image_files[0])).header.copy()
    header.set_data_dtype(np.uint8)
    image = nib.Nifti1Image(data, case.affine, header=header)
    image.header.set_slope_inter(1, 0)  # a mask must not inherit the image's intensity scaling
    image.header["descrip"] = b"mslesion predicted lesion mask"
    with atomic_path(out) as tmp:
        nib.save(image, str(tmp))
    return [out]
