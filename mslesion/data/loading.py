"""A discovered case -> validated canonical arrays, whatever its file format.

NIfTI cases are reoriented to the canonical axial stack of
:mod:`mslesion.data.volumes`; TIFF slice cases (the LGG dataset of Buda et al. 2019, used by the LGG encoder comparison) are
stacked in slice-number order. Both give a :class:`LoadedCase`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mslesion.data.case import Case, normalise_modality
from mslesion.data.cohort import LAYOUTS
from mslesion.data.registration import register_volume
from mslesion.data.skull_strip import SKULL_STRIPS, brain_mask_of
from mslesion.data.volumes import (
    AFFINE_ATOL_MM,
    Volume,
    axial_spacing_mm,
    binarise_mask,
    check_not_constant,
    check_same_grid,
    load_image,
    load_mask,
    to_axial_stack,
)
from mslesion.errors import (
    ConfigError,
    CorruptFileError,
    EmptyMaskError,
    MissingMaskError,
    MissingModalityError,
    NotThreeDError,
    ShapeMismatchError,
)

__all__ = ["LoadedCase", "load_case", "LGG_CHANNELS", "SourceConfig", "REGISTRATIONS", "SKULL_STRIPS"]

#: Channel order of the LGG ``.tif`` slices (Buda et al. 2019).
LGG_CHANNELS = ("pre", "flair", "post")

#: ``SourceConfig.register``: how modalities on another grid than the first are brought onto it.
REGISTRATIONS = ("none", "rigid")


@dataclass
class SourceConfig:
    """Which files of a dataset folder are read (:func:`mslesion.data.cohort.discover_cases`, :func:`load_case`);
    part of ``prep_config.json``."""

    layout: str = field(default="auto", metadata={"choices": LAYOUTS})
    image_patterns: dict[str, str] | None = field(default=None, metadata={
        "flag": "--image-pattern", "pairs": "MOD=PATTERN",
        "help": "e.g. flair='{patient}/{patient}_FLAIR.nii.gz' (repeat per modality)"})
    mask_patterns: dict[str, str] | None = field(default=None, metadata={"flag": "--mask-pattern", "pairs": "MOD=PATTERN"})
    modalities: tuple[str, ...] = field(default=("flair",), metadata={"nargs": "+", "help": "channels, e.g. flair t1 t2"})
    mask_modality: str | None = field(default=None, metadata={"help": "whose lesion mask to use (default: first modality)"})
    allow_empty_masks: bool = field(default=False, metadata={"help": "accept patients without lesions"})
    register: str = field(default="none", metadata={"choices": REGISTRATIONS, "help": (
        "rigid: register every modality whose grid differs from the first's (FLAIR) onto it (SimpleITK, "
        "mutual information); none: such a patient fails")})
    skull_strip: str = field(default="none", metadata={"choices": SKULL_STRIPS, "help": (
        "set every voxel outside a brain mask to 0: mask (files, --brain-mask-pattern), morphology (offline, "
        "from the FLAIR) or hd-bet (the HD-BET tool, Isensee et al. 2019; pip install hd-bet)")})
    brain_mask_pattern: str | None = field(default=None, metadata={"metavar": "PATTERN", "help": (
        "for --skull-strip mask: brain mask files relative to the dataset folder, e.g. '{patient}/brainmask.nii.gz'")})

    def __post_init__(self) -> None:
        self.modalities = tuple(self.modalities)
        if self.register not in REGISTRATIONS:
            raise ConfigError(f"unknown register {self.register!r}; known: {REGISTRATIONS}")
        if self.skull_strip not in SKULL_STRIPS:
            raise ConfigError(f"unknown skull_strip {self.skull_strip!r}; known: {SKULL_STRIPS}")
        if self.brain_mask_pattern is not None and "{patient}" not in self.brain_mask_pattern:
            raise ConfigError(f"brain_mask_pattern {self.brain_mask_pattern!r} has no {{patient}} placeholder; "
                              "write where the patient id goes, e.g. '{patient}/brainmask.nii.gz'")  # fmt: skip
        if self.skull_strip == "mask" and not self.brain_mask_pattern:
            raise ConfigError("skull_strip='mask' reads a brain mask file per patient: give brain_mask_pattern "
                              "(--brain-mask-pattern '{patient}/brainmask.nii.gz', relative to the dataset folder)")


@dataclass
class LoadedCase:
    """A case as canonical arrays plus what is needed to map results back.

    Attributes:
        stack: ``(Z, H, W, M)`` float32 raw intensities, modalities last.
        mask: ``(Z, H, W)`` bool lesion mask.
        modalities: names of the M channels.
        spacing_zhw_mm: voxel size of the stack, None when the format has none.
        affine: source image affine (NIfTI) or None.
        axcodes: source orientation, e.g. ``("L", "A", "S")``.
        source_shape: shape of the source volume in its own voxel order.
        image_files, mask_file: where it came from.
        warnings: what was accepted but is worth recording (e.g. an oblique
            affine, a registered modality and its final metric, lesion voxels
            outside the brain mask), one line each naming the file; prep writes
            them into meta.json.
        notes: how the case was loaded beyond reading it (skull stripping), one line each.
        brain_mask: ``(Z, H, W)`` bool brain mask the stack was stripped with, None when not stripped.
    """

    patient_id: str
    stack: np.ndarray
    mask: np.ndarray
    modalities: list[str]
    spacing_zhw_mm: tuple[float, float, float] | None
    image_files: list[Path]
    mask_file: Path | list[Path] | None
    affine: np.ndarray | None = None
    axcodes: tuple[str, ...] | None = None
    source_shape: tuple[int, ...] | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    brain_mask: np.ndarray | None = field(default=None, repr=False)


def load_case(
    case: Case,
    modalities: list[str] | tuple[str, ...] | None = None,
    mask_modality: str | None = None,
    allow_empty_mask: bool | None = None,
    with_mask: bool = True,
    *,
    source: SourceConfig | None = None,
) -> LoadedCase:
    """Load and validate one case.

    Args:
        modalities: which images to stack as channels; all must share one grid
            unless ``source.register`` is ``rigid``. Default: ``source``'s, else ``("flair",)``.
        mask_modality: whose lesion mask to use (default: ``source``'s, else the first modality).
        allow_empty_mask: accept a patient without any lesion voxel (default: ``source.allow_empty_masks``, else False).
        with_mask: False for images alone (prediction on new patients): the
            mask is then all False and ``mask_file`` is None.
        source: the run's or dataset's :class:`SourceConfig` (``PrepConfig.source()``): its modalities, mask
            modality, registration and skull stripping; arguments given explicitly take precedence.

    Raises:
        mslesion.errors.DataError subclasses naming the offending file;
        ExternalToolError: ``skull_strip='hd-bet'`` without a working HD-BET.
    """
    source = source or SourceConfig()
    modalities = [normalise_modality(m) for m in (modalities if modalities is not None else source.modalities)]
    allow_empty_mask = source.allow_empty_masks if allow_empty_mask is None else allow_empty_mask
    mask_modality = mask_modality or source.mask_modality
    if case.layout == "lgg":
        if source.register != "none" or source.skull_strip != "none":
            raise ConfigError(f"{case.folder}: TIFF slices carry no voxel grid, so register={source.register!r} / "
                              f"skull_strip={source.skull_strip!r} cannot apply; use 'none'")  # fmt: skip
        return _load_lgg(case, modalities, allow_empty_mask, with_mask)
    mask_modality = normalise_modality(mask_modality or modalities[0])
    mask_path = case.mask(mask_modality) if with_mask else None
    vols = [load_image(case.image(m)) for m in modalities]
    ref = vols[0]
    warnings: list[str] = []
    for i, other in enumerate(vols[1:], start=1):
        if source.register == "rigid" and not _same_grid(ref, other):
            vols[i] = register_volume(ref, other, modalities[i], warnings)
        else:
            check_same_grid(ref, other, what="modality image (modalities must share a grid; register them first, "
                                             "e.g. mslesion prep --register rigid)")  # fmt: skip
    planes = [to_axial_stack(v.data, v.affine) for v in vols]
    # One contiguous copy: every later reduction over the volume is then fast.
    stack = np.ascontiguousarray(planes[0][..., None]) if len(planes) == 1 else np.stack(planes, axis=-1)
    vols_read = list(vols)
    if mask_path is None:
        mask = np.zeros(stack.shape[:3], dtype=bool)
    else:
        mask_vol = load_mask(mask_path, allow_empty=allow_empty_mask)
        check_same_grid(ref, mask_vol, what="mask" if source.register == "none"
                        else "mask (lesion masks are not registered: it must lie on the first modality's grid)")
        mask = to_axial_stack(mask_vol.data, mask_vol.affine)
        vols_read.append(mask_vol)
    spacing = axial_spacing_mm(ref.affine)
    notes: list[str] = []
    brain = None
    if source.skull_strip != "none":
        stack = stack if stack.flags.writeable else stack.copy()  # a read-only memory map of the file
        brain = _strip(case, vols, stack, spacing, source, mask, mask_path, warnings, notes)
    return LoadedCase(
        patient_id=case.patient_id,
        stack=stack,
        mask=mask,
        modalities=modalities,
        spacing_zhw_mm=spacing,
        image_files=[v.path for v in vols],
        mask_file=mask_path,
        affine=ref.affine,
        axcodes=ref.axcodes,
        source_shape=tuple(ref.data.shape),
        notes=notes,
        warnings=[w for v in vols_read for w in v.warnings] + warnings,
        brain_mask=brain,
    )


def _same_grid(ref: Volume, other: Volume) -> bool:
    return ref.data.shape == other.data.shape and np.allclose(ref.affine, other.affine, atol=AFFINE_ATOL_MM, rtol=0)


def _strip(case: Case, vols: list[Volume], stack: np.ndarray, spacing, source: SourceConfig, mask: np.ndarray,
           mask_path: Path | None, warnings: list[str], notes: list[str]) -> np.ndarray:  # fmt: skip
    """Zero ``stack`` (in place) outside the brain mask ``source.skull_strip`` gives; return that mask."""
    ref = vols[0]
    brain, where = brain_mask_of(source.skull_strip, ref, stack[..., 0], spacing, source.brain_mask_pattern,
                                 case.root, case.patient_id)  # fmt: skip
    stack[~brain] = 0
    for c, vol in enumerate(vols):
        check_not_constant(stack[..., c], vol.path, f"image inside the brain mask ({where.name})")
    notes.append(f"{where}: skull stripped ({source.skull_strip}): brain mask of {int(brain.sum())} voxels "
                 f"({brain.sum() * float(np.prod(spacing)) / 1000:.1f} mL); every modality is 0 outside it")  # fmt: skip
    outside = int(np.count_nonzero(mask & ~brain))
    if outside:
        warnings.append(f"{mask_path}: {outside} of {int(np.count_nonzero(mask))} lesion voxels lie outside the "
                        f"brain mask ({source.skull_strip}); kept in the lesion mask, but their image voxels are 0")
    return brain


def _read_tif(path: Path) -> np.ndarray:
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise CorruptFileError(path, "cannot read as an image (missing, truncated or not a TIFF)")
    return arr


def _load_lgg(case: Case, modalities: list[str], allow_empty_mask: bool, with_mask: bool = True) -> LoadedCase:
    unknown = [m for m in modalities if m not in LGG_CHANNELS]
    if unknown:
        raise MissingModalityError(case.folder, f"LGG slices hold channels {list(LGG_CHANNELS)}, not {unknown}; "
                                                "use a run trained on LGG slices")  # fmt: skip
    channels = [LGG_CHANNELS.index(m) for m in modalities]
    images, masks = [], []
    shape = None
    for img_path, mask_path in case.slice_files:
        if mask_path is None and with_mask:
            raise MissingMaskError(img_path, "slice has no matching *_mask.tif")
        img = _read_tif(img_path)
        if img.ndim != 3 or img.shape[2] != 3:
            raise NotThreeDError(img_path, f"slice has shape {img.shape}; expected (H, W, 3)")
        # OpenCV reads colour TIFFs as BGR; the dataset's channel order is RGB.
        img = img[..., ::-1]
        shape = shape or img.shape
        if img.shape != shape:
            raise ShapeMismatchError(img_path, f"slice shape {img.shape} differs from the case's {shape}")
        images.append(img[..., channels])
        if not with_mask:
            masks.append(np.zeros(img.shape[:2], dtype=bool))
            continue
        mask = _read_tif(mask_path)
        if mask.ndim == 3:
            mask = mask[..., 0]
        if mask.shape != img.shape[:2]:
            raise ShapeMismatchError(mask_path, f"mask shape {mask.shape} differs from image shape {img.shape[:2]}")
        masks.append(binarise_mask(mask, mask_path, allow_empty=True))
    mask = np.stack(masks)
    stack = np.stack(images).astype(np.float32)
    for c, name in enumerate(modalities):
        check_not_constant(stack[..., c], case.folder, f"{name} channel of every slice")
    if with_mask and not allow_empty_mask and not mask.any():
        raise EmptyMaskError(case.folder, "no slice of this case has a lesion voxel")
    return LoadedCase(
        patient_id=case.patient_id,
        stack=stack,
        mask=mask,
        modalities=modalities,
        spacing_zhw_mm=None,
        image_files=[p for p, _ in case.slice_files],
        mask_file=[m for _, m in case.slice_files] if with_mask else None,
        source_shape=(len(images), *shape[:2]),
    )
