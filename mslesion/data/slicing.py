"""One case's canonical stack -> selected, normalised, 2.5D, resized slices.

Input is what a loader returns: ``stack (Z, H, W, M)`` raw intensities of M
modalities on one grid, and ``mask (Z, H, W)`` bool. Output arrays are what
goes to disk: ``images (N, S, S, C)`` float32 and ``masks (N, S, S, 1)`` uint8
with ``C = M * context`` channels ordered modality-major
(``flair[-1], flair[0], flair[+1], t1[-1], ...``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from mslesion.data.bias_field import BIAS_CORRECTIONS, n4_correct
from mslesion.data.geometry import FITS, SliceGeometry, plan_geometry, to_model, to_native, to_native_many
from mslesion.data.intensity import (
    NORMALISATIONS,
    Normalisation,
    fit_normalisation,
    foreground_mask,
    slice_entropy_bits,
)
from mslesion.data.resampling import Resampling, parse_spacing, plan_resampling

__all__ = [
    "SELECTIONS",
    "CaseSlices",
    "select_slices",
    "context_indices",
    "SliceConfig",
    "slice_case",
    "channel_names",
    "to_native_stack",
    "to_native_volume",
]

SELECTIONS = ("lesion", "brain", "entropy", "all")
CROPS = ("none", "brain")
BACKGROUNDS = ("zero", "keep")


@dataclass
class CaseSlices:
    """The slices of one case, ready to save, and what is needed to map them back."""

    images: np.ndarray
    masks: np.ndarray
    slice_indices: np.ndarray
    lesion_pixels: np.ndarray
    lesion_pixels_native: np.ndarray
    entropy_bits: np.ndarray
    foreground_fraction: np.ndarray
    geometry: SliceGeometry
    normalisations: list[Normalisation]
    channels: list[str]
    n_slices_total: int
    crop_box: tuple[int, int, int, int] | None = None  # (row0, row1, col0, col1) of the native slice, or None
    resampling: Resampling | None = None  # the stack was resampled to a voxel size first (slices index that grid)


def select_slices(
    mask: np.ndarray,
    foreground: np.ndarray,
    entropy_bits: np.ndarray,
    mode: str = "lesion",
    entropy_threshold_bits: float = 2.0,
    min_foreground_fraction: float = 0.01,
) -> np.ndarray:
    """Indices of the axial slices to keep.

    Modes: ``lesion`` (a lesion pixel in the mask, the backbone report), ``brain`` (at least
    ``min_foreground_fraction`` of the slice is head/brain), ``entropy`` (above
    the threshold in bits/pixel, Røvang (2021)), ``all``.
    """
    z = mask.shape[0]
    if mode == "lesion":
        keep = mask.reshape(z, -1).any(axis=1)
    elif mode == "brain":
        keep = foreground.reshape(z, -1).mean(axis=1) >= min_foreground_fraction
    elif mode == "entropy":
        keep = entropy_bits > entropy_threshold_bits
    elif mode == "all":
        keep = np.ones(z, dtype=bool)
    else:
        raise ValueError(f"unknown slice selection {mode!r}; known: {SELECTIONS}")
    return np.flatnonzero(keep)


def context_indices(index: int, depth: int, context: int, padding: str = "edge") -> list[int]:
    """Slice indices stacked around ``index`` for a 2.5D input of ``context`` slices.

    Out-of-volume neighbours repeat the edge slice (``edge``) or are ``-1``,
    meaning a zero slice (``zero``).
    """
    if context < 1 or context % 2 == 0:
        raise ValueError(f"context must be a positive odd number of slices, not {context}")
    half = context // 2
    out = []
    for i in range(index - half, index + half + 1):
        if 0 <= i < depth:
            out.append(i)
        elif padding == "edge":
            out.append(min(max(i, 0), depth - 1))
        elif padding == "zero":
            out.append(-1)
        else:
            raise ValueError(f"unknown context padding {padding!r}; use edge or zero")
    return out


def channel_names(modalities: list[str], context: int) -> list[str]:
    half = context // 2
    if context == 1:
        return list(modalities)
    return [f"{m}[{o:+d}]" for m in modalities for o in range(-half, half + 1)]


@dataclass
class SliceConfig:
    """How one case's slices are made (:func:`slice_case`); part of ``prep_config.json``."""

    selection: str = field(default="lesion", metadata={"choices": SELECTIONS})
    entropy_threshold_bits: float = field(default=2.0, metadata={"flag": "--entropy-threshold", "help": "bits/pixel"})
    min_foreground_fraction: float = field(default=0.01, metadata={
        "flag": "--min-foreground", "help": "for --selection brain: least fraction of the slice inside the head"})
    foreground: str = field(default="auto", metadata={"choices": ("auto", "nonzero", "otsu"), "help": (
        "the head, for z-score statistics and --selection brain: nonzero (skull-stripped), otsu, or auto")})
    bias_correction: str = field(default="none", metadata={"choices": BIAS_CORRECTIONS, "help": (
        "n4: divide each volume and modality by its N4 bias field before normalisation (raw scans)")})
    spacing: tuple[float, ...] | None = field(default=None, metadata={"metavar": "MM", "help": (
        "resample to this voxel size first: Z H W, H W (in-plane only) or one value (isotropic); 0 keeps an axis")})
    normalisation: str = field(default="zscore", metadata={"choices": NORMALISATIONS})
    percentiles: tuple[float, float] = (0.5, 99.5)
    background: str = field(default="zero", metadata={"choices": BACKGROUNDS, "help": (
        "outside the foreground after normalisation: 0 (default, nnU-Net) or the normalised values")})
    size: tuple[int, int] = field(default=(256, 256), metadata={"metavar": ("H", "W")})
    fit: str = field(default="pad", metadata={"choices": FITS})
    context: int = field(default=1, metadata={"help": "2.5D: odd number of adjacent slices as channels"})
    context_padding: str = field(default="edge", metadata={"choices": ("edge", "zero")})
    crop: str = field(default="none", metadata={"choices": CROPS, "help": (
        "brain: crop slices to the head's bounding box (Rondinella et al. 2023), undone at evaluation")})
    crop_margin: int = field(default=4, metadata={"help": "pixels kept around the box"})

    def __post_init__(self) -> None:
        self.size = tuple(int(s) for s in self.size)
        self.percentiles = tuple(float(p) for p in self.percentiles)
        if self.spacing is not None:
            self.spacing = tuple(float(s) for s in self.spacing)
            parse_spacing(self.spacing)  # refuses a bad value when configured, not at the first patient
        if self.context < 1 or self.context % 2 == 0:
            raise ValueError(f"context must be a positive odd number of slices, not {self.context}")


def _bias_corrected(stack: np.ndarray, spacing_zhw_mm, fg: np.ndarray, method: str) -> np.ndarray:
    if method not in BIAS_CORRECTIONS:
        raise ValueError(f"unknown bias correction {method!r}; use one of {BIAS_CORRECTIONS}")
    # the head found on the raw first modality is where the field is fitted, for every modality
    return np.stack([n4_correct(stack[..., i], spacing_zhw_mm, fg if fg.any() else None)
                     for i in range(stack.shape[-1])], axis=-1)  # fmt: skip


def slice_case(
    stack: np.ndarray,
    mask: np.ndarray,
    modalities: list[str],
    spacing_zhw_mm: tuple[float, float, float] | None,
    config: SliceConfig | None = None,
    **options,
) -> CaseSlices:
    """Normalise per volume, select slices, stack 2.5D context, (crop,) resize, as ``config`` says.

    ``options`` change single fields of ``config`` (default :class:`SliceConfig`), e.g. ``selection="all"``.

    ``bias_correction`` divides each modality by its N4 field on the scan's own grid; ``spacing`` then resamples
    stack and mask to that voxel size (:mod:`mslesion.data.resampling`), and everything after works on that grid
    (slice indices, ``lesion_pixels_native``), recorded in ``resampling`` for the way back.
    The foreground (for z-score statistics and ``brain`` selection) and the
    entropy are computed on the first modality's intensities before normalisation. ``crop="brain"``
    cuts every slice to the in-plane bounding box of the volume's foreground
    plus ``crop_margin`` pixels (Rondinella et al. (2023) cropped the black background to 160x160);
    the box is recorded so predictions map back (:func:`to_native_stack`).
    ``background="zero"`` sets voxels outside the foreground to 0 after
    normalisation (nnU-Net's masked z-score): air is then the brain's mean, not
    a large negative value whose share of each slice varies with the slice;
    ``"keep"`` leaves the normalised values.
    """
    cfg = replace(config or SliceConfig(), **options)
    if cfg.background not in BACKGROUNDS:
        raise ValueError(f"unknown background {cfg.background!r}; use {' or '.join(BACKGROUNDS)}")
    if stack.ndim != 4 or mask.shape != stack.shape[:3]:
        raise ValueError(f"expected stack (Z,H,W,M) and mask (Z,H,W); got {stack.shape} and {mask.shape}")
    if cfg.bias_correction != "none":
        # fitted on the scan's own grid: resampling first would only make N4 slower
        stack = _bias_corrected(stack, spacing_zhw_mm, foreground_mask(stack[..., 0], cfg.foreground),
                                cfg.bias_correction)  # fmt: skip
    resampling = plan_resampling(stack.shape[:3], spacing_zhw_mm, parse_spacing(cfg.spacing))
    if resampling is not None:
        stack, mask = resampling.image(stack), resampling.mask(mask)
        spacing_zhw_mm = resampling.target_spacing_mm
    z, h, w, m = stack.shape
    first = stack[..., 0]
    # Per-slice statistics cost a pass over the volume. Lesion selection is
    # known from the mask alone, so then only the kept slices need them (for
    # the manifest), unless normalisation needs the whole foreground.
    keep = np.flatnonzero(mask.any(axis=(1, 2))) if cfg.selection == "lesion" else None
    partial = keep is not None and cfg.normalisation == "none" and cfg.crop == "none"
    fg = foreground_mask(first, cfg.foreground, slices=keep if partial else None)
    entropy = slice_entropy_bits(first, slices=keep)
    norms = [fit_normalisation(stack[..., i], fg, cfg.normalisation, cfg.percentiles) for i in range(m)]
    if keep is None:
        keep = select_slices(mask, fg, entropy, cfg.selection, cfg.entropy_threshold_bits, cfg.min_foreground_fraction)
        entropy = entropy[keep]
    spacing_hw = tuple(spacing_zhw_mm[1:]) if spacing_zhw_mm is not None else None
    box = _crop_box(fg if cfg.crop == "brain" else None, cfg.crop, cfg.crop_margin, (h, w))
    r0, r1, c0, c1 = box or (0, h, 0, w)
    geom = plan_geometry((r1 - r0, c1 - c0), cfg.size, cfg.fit, spacing_hw)

    n, c = len(keep), m * cfg.context
    images = np.empty((n, *geom.size, c), dtype=np.float32)
    masks = np.empty((n, *geom.size, 1), dtype=np.uint8)
    normalised = [norm.apply(stack[..., i]) for i, norm in enumerate(norms)]
    if cfg.background == "zero" and cfg.normalisation != "none":
        for vol in normalised:
            vol[~fg] = 0.0
    for row, k in enumerate(keep):
        planes = []
        for vol in normalised:
            for j in context_indices(int(k), z, cfg.context, cfg.context_padding):
                planes.append(vol[j, r0:r1, c0:c1] if j >= 0 else np.zeros((r1 - r0, c1 - c0), np.float32))
        images[row] = to_model(np.stack(planes, axis=-1), geom, "image")
        masks[row] = to_model(mask[k, r0:r1, c0:c1].astype(np.uint8)[..., None], geom, "mask")
    return CaseSlices(
        images=images,
        masks=masks,
        slice_indices=keep.astype(np.int64),
        lesion_pixels=np.count_nonzero(masks, axis=(1, 2, 3)).astype(np.int64),
        lesion_pixels_native=np.count_nonzero(mask[keep], axis=(1, 2)).astype(np.int64),
        entropy_bits=entropy,
        foreground_fraction=fg[keep].mean(axis=(1, 2)) if n else np.zeros(0),
        geometry=geom,
        normalisations=norms,
        channels=channel_names(modalities, cfg.context),
        n_slices_total=z,
        crop_box=box,
        resampling=resampling,
    )



def _crop_box(fg: np.ndarray | None, crop: str, margin: int, hw: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """In-plane bounding box of the foreground over all slices, plus ``margin``; None without cropping."""
    if crop not in CROPS:
        raise ValueError(f"unknown crop {crop!r}; known: {CROPS}")
    if crop == "none" or fg is None or not fg.any():
        return None
    rows, cols = np.flatnonzero(fg.any(axis=(0, 2))), np.flatnonzero(fg.any(axis=(0, 1)))
    h, w = hw
    return (max(0, int(rows[0]) - margin), min(h, int(rows[-1]) + 1 + margin),
            max(0, int(cols[0]) - margin), min(w, int(cols[-1]) + 1 + margin))  # fmt: skip


def to_native_stack(
    slices: np.ndarray,
    geometry: SliceGeometry,
    indices: list[int] | np.ndarray,
    stack_shape_zhw: tuple[int, int, int],
    kind: str = "probability",
    crop_box: tuple[int, int, int, int] | None = None,
    resampling: Resampling | None = None,
) -> np.ndarray:
    """Model-grid slices -> the canonical ``(Z, H, W)`` stack; slices not listed stay 0.

    Args:
        slices: ``(N, S, S)`` or ``(N, S, S, 1)``.
        indices: the axial index of each of the N slices.
        kind: ``probability`` (bilinear) or ``mask`` (nearest neighbour).
        crop_box: ``(row0, row1, col0, col1)`` the slices were cropped to; outside it stays 0.
        resampling: the stack was resampled before slicing (:attr:`CaseSlices.resampling`): ``indices`` and
            ``crop_box`` are on its grid, and ``stack_shape_zhw`` is the stack's own shape before resampling.
    """
    if resampling is not None:
        if tuple(stack_shape_zhw) != resampling.source_zhw:
            raise ValueError(f"stack shape {tuple(stack_shape_zhw)} is not the {resampling.source_zhw} grid "
                             "the slices were resampled from")  # fmt: skip
        on_grid = to_native_stack(slices, geometry, indices, resampling.target_zhw, kind, crop_box)
        return resampling.to_source(on_grid, kind)
    slices = np.asarray(slices)
    if slices.ndim == 4:
        slices = slices[..., 0]
    if len(slices) != len(indices):
        raise ValueError(f"got {len(slices)} slices but {len(indices)} slice indices")
    dtype = np.float32 if kind == "probability" else np.uint8
    stack = np.zeros(tuple(stack_shape_zhw), dtype=dtype)
    r0, r1, c0, c1 = crop_box or (0, stack.shape[1], 0, stack.shape[2])
    if kind == "probability" and len(indices):
        stack[np.asarray(indices), r0:r1, c0:c1] = to_native_many(slices, geometry)
        return stack
    for row, k in enumerate(indices):
        stack[k, r0:r1, c0:c1] = to_native(slices[row], geometry, kind)
    return stack


def to_native_volume(slices: np.ndarray, meta: dict, kind: str = "probability") -> np.ndarray:
    """Model-grid slices of one case -> a volume on the source file's voxel grid.

    The exact inverse of the preparation: each slice is resized back to its
    native in-plane grid (:func:`mslesion.data.geometry.to_native`), put at its axial
    index (slices that were not selected stay 0), and the canonical stack is
    reoriented to the file's voxel order, so it can be saved with the source
    affine. TIFF cases (no affine) come back as the ``(Z, H, W)`` stack.

    Args:
        slices: ``(N, S, S)`` or ``(N, S, S, 1)``, rows as in the case's meta.
        meta: the case's ``meta.json`` content.
        kind: ``probability`` (bilinear) or ``mask`` (nearest neighbour).
    """
    from mslesion.data.volumes import from_axial_stack

    indices = list(meta["slice_indices"])
    if len(slices) != len(indices):
        raise ValueError(f"got {len(slices)} slices but the case has {len(indices)}")
    geom = SliceGeometry.from_dict(meta["geometry"])
    box, resampled = meta.get("crop_box"), meta.get("resampling")
    stack = to_native_stack(slices, geom, indices, tuple(meta["stack_shape_zhw"]), kind, tuple(box) if box else None,
                            Resampling.from_dict(resampled) if resampled else None)  # fmt: skip
    affine = meta["source"].get("affine")
    return stack if affine is None else from_axial_stack(stack, np.asarray(affine))
