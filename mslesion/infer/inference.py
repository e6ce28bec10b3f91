"""A trained run + volumes -> lesion probability volumes, and masks written back as files.

Every axial slice of a volume is prepared exactly as ``mslesion prep``
prepared the training slices (the run's ``prep_config.json``: modalities,
normalisation, size, fit, 2.5D context), predicted in batches, resized back to
the native in-plane grid and restacked; thresholding happens on the native
grid. Masks are written in the source file's own voxel order with its affine
and header (NIfTI), or as one ``*_pred_mask.tif`` per slice for TIFF datasets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mslesion.data.loading import LoadedCase
from mslesion.data.prep import PrepConfig
from mslesion.data.slicing import slice_case, to_native_stack
from mslesion.data.volumes import from_axial_stack
from mslesion.errors import DamagedCheckpointError, RunNotFoundError
from mslesion.fileio import atomic_path
from mslesion.folders import CHECKPOINTS, RunFolder
from mslesion.outputs import check_inside

__all__ = ["CHECKPOINTS", "checkpoint_path", "TrainedRun", "open_run", "open_runs", "check_run", "read_run_config",
           "run_prep_config", "predict_slices", "predict_volume", "write_mask", "write_mask_like"]  # fmt: skip

def checkpoint_path(run_dir: str | Path, checkpoint: str = "model") -> Path:
    """The file of ``checkpoint`` in ``run_dir`` (:meth:`mslesion.folders.RunFolder.checkpoint`)."""
    return RunFolder(run_dir).checkpoint(checkpoint)


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


def read_run_config(run_dir: str | Path) -> dict:
    """A run folder's ``config.json``, checking first that ``run_dir`` is a run (:meth:`RunFolder.open`)."""
    return RunFolder.open(run_dir).config


def run_prep_config(run_dir: str | Path) -> dict:
    """The preparation a run was trained on: its own copy, else its dataset's (:meth:`RunFolder.prep_config`)."""
    return RunFolder.open(run_dir).prep_config()


def check_run(run_dir: str | Path, checkpoint: str = "model") -> tuple[dict, dict, Path]:
    """Check a 2D run folder without loading its model: ``(config, prep record, checkpoint path)``.

    Raises:
        RunNotFoundError: not a run folder, a 3D run, or no such checkpoint.
        CorruptFileError: a damaged ``config.json`` or ``prep_config.json``.
    """
    run = RunFolder(run_dir)
    run.checkpoint(checkpoint)  # an unknown checkpoint name first: a ValueError
    if run.kind == "3d":
        raise RunNotFoundError(run.path, "is a 3D patch run (mslesion train3d), which this command does not take; "
                                         "score it with mslesion evaluate")  # fmt: skip
    path = run.require_checkpoint(checkpoint)
    return run.config, run.prep_config(), path


def open_run(run_dir: str | Path, checkpoint: str = "model") -> TrainedRun:
    """Load a run's ``model.keras`` (default, see :data:`CHECKPOINTS`), ``best.keras`` or ``final.keras``.

    Raises:
        RunNotFoundError: see :func:`check_run`.
        DamagedCheckpointError: the checkpoint is truncated or not a Keras model file.
    """
    from mslesion.models import load_model
    from mslesion.models.saving import DamagedModelError

    run_dir = Path(run_dir)
    config, record, path = check_run(run_dir, checkpoint)
    try:
        model = load_model(path)
    except DamagedModelError as exc:
        other = next((c for c in ("final", "best") if c != path.stem and (run_dir / f"{c}.keras").is_file()), None)
        hint = f"re-train or use --checkpoint {other}" if other else "re-train"
        raise DamagedCheckpointError(path, f"damaged or not a Keras model file ({exc.reason}); {hint}") from exc
    return TrainedRun(run_dir, path.stem, model, PrepConfig.from_dict(record), config, record)


def predict_slices(model, images: np.ndarray, batch_size: int = 16, tta: str = "none", passes=None) -> np.ndarray:
    """``(N, S, S, C)`` model-grid slices -> ``(N, S, S)`` float32 lesion probabilities.

    ``tta``: test-time augmentation (:data:`mslesion.infer.tta.TTA_MODES`), the mean over its transforms.
    ``passes``: a :class:`mslesion.infer.uncertainty.PassStats` receiving every pass.
    """
    from mslesion.infer.tta import predict_tta, transforms

    transforms(tta)  # an unknown mode fails before any prediction
    if len(images) == 0:
        return np.zeros((0, *images.shape[1:3]), np.float32)
    expected = tuple(model.input_shape[1:])
    if tuple(images.shape[1:]) != expected and None not in expected:
        raise ValueError(f"slices have shape {images.shape[1:]} but the model expects {expected}")

    def once(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(np.asarray(x, np.float32), batch_size=batch_size, verbose=0), np.float32)[..., 0]

    return predict_tta(once, np.asarray(images, np.float32), tta, passes)


def open_runs(run_dirs: Sequence[str | Path], checkpoint: str = "model") -> list[TrainedRun]:
    """Open the members of an ensemble; they must prepare slices alike (one slicing serves them all).

    Raises:
        ValueError: no run, or two members whose preparation or input shape differ.
        RunNotFoundError, DamagedCheckpointError: as :func:`open_run`.
    """
    if not run_dirs:
        raise ValueError("an ensemble needs at least one run")
    for run_dir in run_dirs[1:]:  # cheap checks before any model is loaded
        _same_preparation(run_dirs[0], run_dir, checkpoint)
    runs = [open_run(r, checkpoint) for r in run_dirs]
    for run in runs[1:]:
        if run.input_shape != runs[0].input_shape:
            raise ValueError(f"{run.run_dir}: its model takes {run.input_shape}, but {runs[0].run_dir}'s takes "
                             f"{runs[0].input_shape}; an ensemble's members must take the same slices")  # fmt: skip
    return runs


def _same_preparation(first: str | Path, other: str | Path, checkpoint: str) -> None:
    a = PrepConfig.from_dict(check_run(first, checkpoint)[1])
    b = PrepConfig.from_dict(check_run(other, checkpoint)[1])
    # which slices were kept for training does not matter here: prediction slices every one
    ignore = {"selection", "entropy_threshold_bits", "min_foreground_fraction"}
    ours, theirs = asdict(a.slicing()), asdict(b.slicing())
    diff = {k: (v, theirs[k]) for k, v in ours.items() if k not in ignore and theirs[k] != v}
    if a.modalities != b.modalities:
        diff["modalities"] = (a.modalities, b.modalities)
    if diff:
        shown = ", ".join(f"{k} {x!r} vs {y!r}" for k, (x, y) in sorted(diff.items()))
        raise ValueError(f"{other}: prepared unlike {first} ({shown}); an ensemble's members must share "
                         "their preparation")  # fmt: skip


def predict_volume(run: TrainedRun | Sequence[TrainedRun], case: LoadedCase, batch_size: int = 16,
                   tta: str = "none", uncertainty: str = "none"):  # fmt: skip
    """Lesion probability for every voxel of ``case`` on its canonical ``(Z, H, W)`` stack.

    ``run``: one run, or the members of an ensemble (:func:`open_runs`), whose probabilities are
    averaged (a running sum: one array whatever the number of members). ``tta``: see
    :func:`predict_slices`. ``uncertainty`` (``std`` or ``entropy``, :mod:`mslesion.infer.uncertainty`):
    return ``(probability, uncertainty)``, both on the canonical stack.
    """
    from mslesion.infer.uncertainty import PassStats, uncertainty_map

    members = list(run) if isinstance(run, (list, tuple)) else [run]
    first = members[0]
    sliced = slice_case(case.stack, case.mask, case.modalities, case.spacing_zhw_mm, first.prep.slicing(),
                        selection="all")
    if tuple(sliced.images.shape[1:]) != first.input_shape:
        raise ValueError(
            f"patient {case.patient_id}: prepared slices have shape {sliced.images.shape[1:]} but the model of "
            f"{first.run_dir} expects {first.input_shape}; modalities {case.modalities} vs {list(first.prep.modalities)}"
        )
    probs, passes = None, PassStats() if uncertainty == "std" else None
    for member in members:
        p = predict_slices(member.model, sliced.images, batch_size, tta, passes)
        probs = p if probs is None else np.add(probs, p, out=probs)
    probs /= len(members)

    def native(a: np.ndarray) -> np.ndarray:
        return to_native_stack(a, sliced.geometry, sliced.slice_indices, case.stack.shape[:3], "probability",
                               sliced.crop_box, sliced.resampling)  # fmt: skip

    if uncertainty == "none":
        return native(probs)
    if passes is None:  # entropy: of the mean probability
        passes = PassStats()
        passes.add(probs)
    return native(probs), native(uncertainty_map(passes, uncertainty))


def write_mask(mask_zhw: np.ndarray, case: LoadedCase, out: str | Path) -> list[Path]:
    """Write a canonical-stack mask in the source's own format and voxel order.

    NIfTI cases: ``out`` is a ``.nii.gz`` file holding uint8 {0, 1} with the
    source image's affine and header (loadable by nibabel, ITK-SNAP, FSLeyes).
    TIFF cases: ``out`` is a folder receiving ``<slice>_pred_mask.tif`` (0/255)
    beside each source slice name. Every file is written atomically.
    """
    return write_mask_like(mask_zhw, case.affine, case.image_files, out)


def write_mask_like(mask_zhw: np.ndarray, affine: np.ndarray | None, image_files: Sequence[str | Path],
                    out: str | Path) -> list[Path]:  # fmt: skip
    """:func:`write_mask` for a source given by its affine (None: TIFF slices) and image files."""
    import nibabel as nib

    mask_zhw = np.asarray(mask_zhw).astype(np.uint8)
    out = Path(out)
    if affine is None:
        import cv2

        written = []
        for k, src in enumerate(image_files):
            path = check_inside(out, out / f"{Path(src).stem}_pred_mask.tif")
            with atomic_path(path) as tmp:
                if not cv2.imwrite(str(tmp), mask_zhw[k] * 255):
                    raise OSError(f"{path}: OpenCV could not write the mask")
            written.append(path)
        return written
    data = from_axial_stack(mask_zhw, affine)
    header = nib.load(str(image_files[0])).header.copy()
    header.set_data_dtype(np.uint8)
    image = nib.Nifti1Image(data, affine, header=header)
    image.header.set_slope_inter(1, 0)  # a mask must not inherit the image's intensity scaling
    image.header["descrip"] = b"mslesion predicted lesion mask"
    with atomic_path(out) as tmp:
        nib.save(image, str(tmp))
    return [out]
