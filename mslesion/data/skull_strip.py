"""Brain masks for skull stripping at load time (``skull_strip``): a user's mask file, morphology, or HD-BET.

Raw clinical scans hold scalp, skull, eyes and neck; a z-score over the "head" then mixes them into the
lesion contrast, and bright scalp fat looks like lesion on FLAIR. :func:`mslesion.data.loading.load_case` sets
every voxel outside the brain mask to exactly 0 in every modality, so the slicing's ``foreground="auto"``
(``nonzero`` once over 20% of the voxels are 0) then takes the brain as foreground.

* ``mask``: a brain mask file per patient, found by a ``{patient}`` pattern under the dataset root
  (:func:`find_brain_mask`, :func:`read_brain_mask`).
* ``morphology``: :func:`morphology_brain_mask`, offline and model-free, on the first modality (FLAIR).
* ``hd-bet``: :func:`hd_bet_brain_mask`, the learned HD-BET (Isensee et al. 2019) through its command line.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np

from mslesion.data.volumes import Volume, binarise_mask, check_same_grid, load_nifti, to_axial_stack
from mslesion.errors import BrainMaskError, ConfigError, DataError, ExternalToolError

__all__ = ["SKULL_STRIPS", "brain_mask_of", "morphology_brain_mask", "find_brain_mask", "read_brain_mask",
           "hd_bet_brain_mask", "HD_BET_ADVICE"]  # fmt: skip

SKULL_STRIPS = ("none", "mask", "morphology", "hd-bet")

#: What to do when HD-BET is missing or fails: one line, shown in the error.
HD_BET_ADVICE = ("install it with `pip install hd-bet` (it downloads its model weights at first use, which needs "
                 "internet once); offline, use skull_strip='morphology' or skull_strip='mask'")  # fmt: skip


def brain_mask_of(method: str, ref: Volume, first_zhw: np.ndarray, spacing_zhw_mm: Sequence[float] | None,
                  pattern: str | None = None, root: str | Path | None = None,
                  patient_id: str = "") -> tuple[np.ndarray, Path]:  # fmt: skip
    """The brain mask ``method`` gives for one case, as a canonical ``(Z, H, W)`` bool stack, and where it came from.

    Args:
        method: ``mask``, ``morphology`` or ``hd-bet`` (see module doc).
        ref: the first modality's volume (file order; its grid is the mask's).
        first_zhw: the same volume as a canonical axial stack (what ``morphology`` reads).
        pattern, root, patient_id: for ``mask``, the file to read (:func:`find_brain_mask`).

    Raises:
        ConfigError: ``mask`` without a pattern, or an unknown method.
        BrainMaskError: the mask file is missing, unusable, or the mask is empty.
        ExternalToolError: ``hd-bet`` is missing or fails.
    """
    if method == "mask":
        if not pattern:
            raise ConfigError("skull_strip='mask' needs brain_mask_pattern (--brain-mask-pattern PATTERN)")
        where = find_brain_mask(root, pattern, patient_id)
        brain = to_axial_stack(read_brain_mask(where, ref), ref.affine)
    elif method == "morphology":
        where, brain = ref.path, morphology_brain_mask(first_zhw, spacing_zhw_mm)
    elif method == "hd-bet":
        where, brain = ref.path, to_axial_stack(hd_bet_brain_mask(ref), ref.affine)
    else:
        raise ConfigError(f"unknown skull_strip {method!r}; known: {SKULL_STRIPS}")
    brain = np.ascontiguousarray(brain, dtype=bool)
    if not brain.any():
        raise BrainMaskError(where, f"skull stripping ({method}) found no brain voxel")
    return brain, Path(where)


def _otsu_level(volume: np.ndarray) -> float:
    """Otsu's threshold of the volume (256 levels, from every 7th voxel, as in :mod:`mslesion.data.intensity`)."""
    sample = np.asarray(volume, np.float32).reshape(-1)[::7]
    lo, hi = float(sample.min()), float(sample.max())
    if hi <= lo:
        return lo
    q = ((sample - lo) * np.float32(255.999 / (hi - lo))).astype(np.uint8)
    level, _ = cv2.threshold(q[None, :], 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return lo + float(level) * (hi - lo) / 255.999


def morphology_brain_mask(
    volume_zhw: np.ndarray,
    spacing_zhw_mm: Sequence[float] | None = None,
    erode_mm: float = 4.0,
    margin_mm: float = 1.0,
    close_mm: float = 3.0,
) -> np.ndarray:
    """A brain mask of a FLAIR volume from intensity and morphology alone (no model, no download).

    Steps: voxels above Otsu's threshold (tissue; air, CSF and bone are dark on FLAIR); erosion by a ball of
    ``erode_mm`` (cuts the bridges, up to ~2x ``erode_mm`` thick, that join brain and scalp); the largest
    6-connected 3D component (the brain); dilation back by ``erode_mm + margin_mm`` (``margin_mm`` takes back the
    partial-volume rim); a closing by ``close_mm`` (surface sulci); holes filled slice by slice (ventricles).
    Balls are Euclidean distances in mm on the voxel grid (exact for anisotropic voxels).

    Args:
        volume_zhw: ``(Z, H, W)`` intensities of the first modality (FLAIR).
        spacing_zhw_mm: voxel size; None: 1 mm (then the radii are in voxels).

    Returns:
        bool ``(Z, H, W)``; all False when nothing is above the threshold.
    """
    from scipy import ndimage  # lazy: loading a case without skull stripping need not import scipy

    volume = np.asarray(volume_zhw, np.float32)
    if volume.ndim != 3:
        raise ValueError(f"a brain mask needs a 3D volume (Z, H, W), not shape {volume.shape}")
    spacing = tuple(float(s) for s in spacing_zhw_mm) if spacing_zhw_mm else (1.0, 1.0, 1.0)
    out = np.zeros(volume.shape, dtype=bool)
    tissue = volume > _otsu_level(volume)
    if not tissue.any():
        return out
    # distance transforms only over the tissue's bounding box (plus the grow radius): ~2x faster on a head
    reach = [int(np.ceil((erode_mm + margin_mm + close_mm) / s)) + 1 for s in spacing]
    box = tuple(slice(max(int(i.min()) - r, 0), min(int(i.max()) + r + 1, n))
                for i, r, n in zip(np.nonzero(tissue), reach, volume.shape))  # fmt: skip
    tissue = tissue[box]
    core = ndimage.distance_transform_edt(tissue, sampling=spacing) > erode_mm
    labels, n = ndimage.label(core)
    if n == 0:
        return out
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    brain = ndimage.distance_transform_edt(labels != sizes.argmax(), sampling=spacing) <= erode_mm + margin_mm + close_mm
    if close_mm > 0:
        brain = ndimage.distance_transform_edt(brain, sampling=spacing) > close_mm
    for z in range(brain.shape[0]):
        brain[z] = ndimage.binary_fill_holes(brain[z])
    out[box] = brain
    return out


def find_brain_mask(root: str | Path | None, pattern: str, patient_id: str) -> Path:
    """The brain mask file of ``patient_id``: ``pattern`` (``{patient}`` placeholder, ``*`` allowed) under ``root``.

    Raises:
        BrainMaskError: no file, or several, match; or the case has no dataset root to resolve against.
    """
    if "{patient}" not in pattern:
        raise ConfigError(f"brain mask pattern {pattern!r} has no {{patient}} placeholder")
    if root is None:
        raise BrainMaskError(None, f"patient {patient_id}: no dataset folder is known to resolve the brain mask "
                                   f"pattern {pattern!r} against")  # fmt: skip
    root = Path(root)
    wanted = root / pattern.replace("{patient}", str(patient_id))
    found = sorted(glob.glob(str(root / pattern.replace("{patient}", glob.escape(str(patient_id))))))
    found = [f for f in found if Path(f).is_file()]
    if not found:
        raise BrainMaskError(wanted, f"no brain mask file for patient {patient_id} (pattern {pattern!r} under {root})")
    if len(found) > 1:
        raise BrainMaskError(wanted, f"{len(found)} files match the brain mask pattern for patient {patient_id} "
                                     f"({', '.join(Path(f).name for f in found[:3])}); make it match one")  # fmt: skip
    return Path(found[0])


def read_brain_mask(path: str | Path, ref: Volume) -> np.ndarray:
    """A brain mask file as bool, in the file's own voxel order, checked against the first modality ``ref``.

    Accepted values as for lesion masks: [0, 1] (cut at 0.5) or {0, 255}.

    Raises:
        BrainMaskError: missing, unreadable, not binary, empty, or not on ``ref``'s grid (shape and affine).
    """
    path = Path(path)
    if not path.is_file():
        raise BrainMaskError(path, "brain mask file does not exist")
    try:
        vol = load_nifti(path)
        vol.data = binarise_mask(vol.data, path, allow_empty=True)
    except DataError as exc:
        raise BrainMaskError(path, f"not a usable brain mask ({exc.problem})") from exc
    try:
        check_same_grid(ref, vol, what="brain mask")
    except DataError as exc:
        raise BrainMaskError(path, f"{exc.problem}; a brain mask must lie on the grid of the first modality "
                                   "(register it first)") from exc  # fmt: skip
    if not vol.data.any():
        raise BrainMaskError(path, "brain mask is empty (no brain voxel)")
    return np.asarray(vol.data, dtype=bool)


def hd_bet_brain_mask(ref: Volume, device: str = "cpu") -> np.ndarray:
    """HD-BET's brain mask (Isensee et al. 2019, Hum. Brain Mapp.) of ``ref``, in its file's voxel order.

    Runs the ``hd-bet`` command (HD-BET 2: ``-i IN -o OUT -device cpu --disable_tta --save_bet_mask``) on a
    copy of ``ref`` written into a temporary folder of our own, removed afterwards. HD-BET downloads its model
    weights at first use. The mask is ``OUT_bet.nii.gz`` (HD-BET 2), ``OUT_mask.nii.gz`` (HD-BET 1), else the
    nonzero voxels of the stripped image.

    Raises:
        ExternalToolError: ``hd-bet`` is not on PATH, fails (offline, no weights), or writes nothing usable.
    """
    exe = shutil.which("hd-bet")
    if exe is None:
        raise ExternalToolError(f"skull_strip='hd-bet' needs the HD-BET command-line tool (Isensee et al. 2019), "
                                f"which is not on PATH: {HD_BET_ADVICE}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="mslesion-hdbet-") as tmp:
        source, out = Path(tmp) / "image.nii.gz", Path(tmp) / "brain.nii.gz"
        nib.save(nib.Nifti1Image(np.asarray(ref.data, np.float32), ref.affine), str(source))
        cmd = [exe, "-i", str(source), "-o", str(out), "-device", device, "--disable_tta", "--save_bet_mask"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        except OSError as exc:
            raise ExternalToolError(f"{ref.path}: hd-bet could not be started ({exc}); {HD_BET_ADVICE}") from exc
        if done.returncode != 0:
            said = [line.strip() for line in (done.stderr or done.stdout or "").splitlines() if line.strip()]
            raise ExternalToolError(f"{ref.path}: hd-bet failed (exit {done.returncode}: "
                                    f"{said[-1] if said else 'no message'}); {HD_BET_ADVICE}")  # fmt: skip
        for candidate in (Path(tmp) / "brain_bet.nii.gz", Path(tmp) / "brain_mask.nii.gz", out):
            if candidate.is_file():
                data = np.asanyarray(nib.load(str(candidate)).dataobj)
                break
        else:
            raise ExternalToolError(f"{ref.path}: hd-bet wrote no brain mask or image; {HD_BET_ADVICE}")
    data = data[..., 0] if data.ndim == 4 and data.shape[3] == 1 else data
    if data.shape != ref.data.shape:
        raise ExternalToolError(f"{ref.path}: hd-bet's mask has shape {data.shape}, not the image's {ref.data.shape}")
    return data > (0.5 if candidate is not out else 0)
