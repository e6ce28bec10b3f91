"""NIfTI volumes: load, validate, reorient to canonical axial stacks and back.

Every volume is turned into a canonical ``(Z, H, W)`` array of axial slices,
whatever the file's voxel order: nibabel reorients it to RAS+, then

* ``Z`` runs inferior -> superior,
* ``H`` (rows) runs anterior -> posterior (anterior at the top of a picture),
* ``W`` (columns) runs patient left -> right (x grows toward R in RAS),

so a slice shown with ``imshow`` is seen from above, anterior up, patient left
on the viewer's left (the "neurological" convention).

:func:`from_axial_stack` undoes all of it exactly, back to the file's own voxel
order, so a prediction can be saved on the source grid with the source affine.
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

from mslesion.errors import (
    AffineMismatchError,
    BadVoxelSizeError,
    ConstantImageError,
    CorruptFileError,
    EmptyMaskError,
    NonBinaryMaskError,
    NonFiniteError,
    NotThreeDError,
    ObliqueAffineWarning,
    ShapeMismatchError,
)

__all__ = [
    "Volume",
    "load_nifti",
    "load_image",
    "load_mask",
    "check_not_constant",
    "check_same_grid",
    "to_axial_stack",
    "from_axial_stack",
    "AFFINE_ATOL_MM",
    "OBLIQUE_TOLERANCE_DEG",
]

#: Two grids are "the same" when their affines agree within this many mm
#: (converters round the origin differently; a voxel is ~1 mm).
AFFINE_ATOL_MM = 0.1

#: Voxel axes tilted by more than this against the scanner axes give an
#: :class:`~mslesion.errors.ObliqueAffineWarning` (float32 affines of straight
#: scans are off by ~1e-5 degrees).
OBLIQUE_TOLERANCE_DEG = 0.01

_READ_ERRORS = (EOFError, OSError, zlib.error, ValueError, nib.filebasedimages.ImageFileError)


@dataclass
class Volume:
    """A 3D volume as stored in its file, plus where it came from.

    Attributes:
        data: ``(I, J, K)`` array in the file's own voxel order.
        affine: 4x4 voxel -> world (mm) matrix of the file.
        path: the file it was read from.
        header: the nibabel header, kept to write predictions with it.
        warnings: what was accepted but is worth knowing (an oblique affine), one
            line each naming the file.
    """

    data: np.ndarray
    affine: np.ndarray
    path: Path
    header: nib.Nifti1Header | None = field(default=None, repr=False)
    warnings: list[str] = field(default_factory=list)

    @property
    def axcodes(self) -> tuple[str, str, str]:
        return tuple(nib.aff2axcodes(self.affine))  # type: ignore[return-value]

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size along the file's own axes (I, J, K)."""
        return tuple(float(s) for s in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))  # type: ignore[return-value]


def load_nifti(path: str | Path) -> Volume:
    """Read a NIfTI file fully; any read failure becomes :class:`CorruptFileError`.

    Raises:
        CorruptFileError: missing, truncated, or not a NIfTI file.
        NotThreeDError: anything but a 3D array (a trailing axis of length 1 is dropped).
        BadVoxelSizeError: a zero, negative or NaN voxel size in the header or the affine.

    Warns:
        ObliqueAffineWarning: voxel axes tilted against the scanner axes (also kept in ``warnings``).
    """
    path = Path(path)
    if not path.is_file():
        raise CorruptFileError(path, "file does not exist")
    try:
        img = nib.load(str(path))
        # Reading the whole array is what catches truncated gzip streams.
        data = np.asanyarray(img.dataobj)
    except _READ_ERRORS as exc:
        raise CorruptFileError(path, f"cannot read as NIfTI ({type(exc).__name__}: {exc})") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3 or 0 in data.shape:
        raise NotThreeDError(path, f"volume has shape {data.shape}; expected a 3D volume")
    _check_voxel_sizes(path, img)
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise CorruptFileError(path, "affine is singular or not finite; fix the header (qform/sform) or re-export")
    vol = Volume(data=data, affine=affine, path=path, header=img.header)
    tilt = float(np.degrees(nib.affines.obliquity(affine)).max())
    if tilt > OBLIQUE_TOLERANCE_DEG:
        message = (f"{path}: oblique affine, voxel axes up to {tilt:.2f} degrees off the scanner axes; "
                   "sliced along the nearest axes (not resampled)")  # fmt: skip
        warnings.warn(message, ObliqueAffineWarning, stacklevel=2)
        vol.warnings.append(message)
    return vol


def _stored_zooms(img) -> tuple[float, ...]:
    """Voxel sizes as the file stores them: nibabel's loader silently turns 0 into 1 and -x into x."""
    holder = img.file_map.get("header") or img.file_map.get("image")
    if isinstance(img, nib.analyze.AnalyzeImage) and holder is not None and holder.filename:
        try:
            with nib.openers.ImageOpener(holder.filename) as f:
                return tuple(float(z) for z in img.header_class.from_fileobj(f, check=False).get_zooms())
        except _READ_ERRORS:
            pass  # the image itself was read, so fall back to the (repaired) header
    return tuple(float(z) for z in img.header.get_zooms())


def _check_voxel_sizes(path: Path, img) -> None:
    """Refuse voxel sizes that would make every mL and mm wrong (see :class:`BadVoxelSizeError`)."""
    zooms = np.asarray(_stored_zooms(img)[:3], dtype=np.float64)
    sizes = np.asarray(nib.affines.voxel_sizes(np.asarray(img.affine, dtype=np.float64)), dtype=np.float64)
    for where, values in (("header pixdim", zooms), ("affine", sizes)):
        if values.size and not (np.all(np.isfinite(values)) and np.all(values > 0)):
            shown = " x ".join(f"{v:g}" for v in values)
            raise BadVoxelSizeError(path, f"voxel size {shown} mm ({where}) is zero, negative or NaN, so volumes "
                                          "in mL would be wrong; fix the header's pixdim/sform or re-export the image")


def load_image(path: str | Path) -> Volume:
    """Load an image volume as float32 and check every voxel is finite and not all the same.

    Raises:
        NonFiniteError: NaN or Inf voxels.
        ConstantImageError: every voxel holds one value (e.g. an all-zero export).
    """
    vol = load_nifti(path)
    if vol.data.dtype.kind == "f":  # integer voxels are always finite
        bad = ~np.isfinite(vol.data)
        if bad.any():
            raise NonFiniteError(vol.path, f"{int(bad.sum())} voxels are NaN or Inf")
    vol.data = vol.data.astype(np.float32, copy=False)
    check_not_constant(vol.data, vol.path)
    return vol


def check_not_constant(data: np.ndarray, path: str | Path | None, what: str = "image") -> None:
    """Refuse an image whose voxels all hold one value: normalisation would divide by zero, nothing is there."""
    lo, hi = float(np.min(data)), float(np.max(data))
    if lo == hi:
        raise ConstantImageError(path, f"{what} is constant (every voxel is {lo:g}): a blank or failed export; "
                                       "check the file or leave this patient out")  # fmt: skip


def load_mask(path: str | Path, allow_empty: bool = False) -> Volume:
    """Load a lesion mask as bool, thresholding at 0.5.

    Accepted: values in [0, 1] (soft or binary masks) and {0, 255} (8-bit masks).
    Anything else (label maps such as {0, 1, 2}, negative values) is refused
    rather than silently thresholded.

    Raises:
        NonFiniteError, NonBinaryMaskError, EmptyMaskError (unless ``allow_empty``).
    """
    vol = load_nifti(path)
    vol.data = binarise_mask(vol.data, vol.path, allow_empty=allow_empty)
    return vol


def binarise_mask(data: np.ndarray, path: str | Path | None, allow_empty: bool = False) -> np.ndarray:
    """Threshold a mask array at 0.5 (of 255 for 8-bit masks) after checking its values."""
    data = np.asarray(data)
    if data.dtype.kind == "f":
        bad = ~np.isfinite(data)
        if bad.any():
            raise NonFiniteError(path, f"mask has {int(bad.sum())} NaN or Inf voxels")
    lo, hi = (data.min(), data.max()) if data.size else (0, 0)
    if lo >= 0 and hi <= 1:
        out = data >= 0.5
    else:
        values = np.unique(data)
        if set(values.tolist()) <= {0, 255}:
            out = data >= 128
        else:
            shown = ", ".join(f"{v:g}" for v in values[:8]) + (" ..." if values.size > 8 else "")
            raise NonBinaryMaskError(
                path, f"mask is not binary: values {{{shown}}}; expected 0/1 (or 0/255)"
            )
    if not allow_empty and not out.any():
        raise EmptyMaskError(path, "mask has no lesion voxel")
    return out


def check_same_grid(ref: Volume, other: Volume, what: str = "mask") -> None:
    """Refuse two volumes that do not share shape and affine (within 0.1 mm)."""
    if ref.data.shape != other.data.shape:
        raise ShapeMismatchError(
            other.path, f"{what} shape {other.data.shape} differs from image {ref.path.name} shape {ref.data.shape}"
        )
    if not np.allclose(ref.affine, other.affine, atol=AFFINE_ATOL_MM, rtol=0):
        diff = float(np.abs(ref.affine - other.affine).max())
        raise AffineMismatchError(
            other.path, f"{what} affine differs from image {ref.path.name} by up to {diff:.3g} mm"
        )


# Canonical axial stack: RAS+ voxel order (X, Y, Z) -> (Z, Y reversed, X).
_RAS = axcodes2ornt(("R", "A", "S"))


def to_axial_stack(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """File-order volume -> canonical ``(Z, H, W)`` axial stack (see module doc).

    Returns a view of ``data`` where possible (no copy).
    """
    ornt = ornt_transform(io_orientation(affine), _RAS)
    ras = apply_orientation(data, ornt)
    return ras.transpose(2, 1, 0)[:, ::-1, :]


def from_axial_stack(stack: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Exact inverse of :func:`to_axial_stack`: ``(Z, H, W)`` -> the file's voxel order."""
    ras = np.asarray(stack)[:, ::-1, :].transpose(2, 1, 0)
    ornt = ornt_transform(_RAS, io_orientation(affine))
    return np.ascontiguousarray(apply_orientation(ras, ornt))


def axial_spacing_mm(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size of the canonical stack as ``(z, h, w)`` in mm."""
    ornt = io_orientation(affine)
    sizes = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    ras_sizes = [0.0, 0.0, 0.0]
    for file_axis, (ras_axis, _flip) in enumerate(ornt):
        ras_sizes[int(ras_axis)] = float(sizes[file_axis])
    x, y, z = ras_sizes
    return (z, y, x)


def canonical_affine(data_shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """Affine of the RAS-reoriented volume (for reference; the stack flips Y on top)."""
    ornt = ornt_transform(io_orientation(affine), _RAS)
    return affine @ inv_ornt_aff(ornt, data_shape)
