"""Rigid co-registration of a modality onto the first modality's grid (``register="rigid"``), through SimpleITK.

Raw clinical scans are often acquired on different grids (a 3D T1 at 1 mm, a 2D FLAIR at 0.9x0.9x5 mm) and the
head moves between series. :func:`register_to` finds the rigid (Euler 3D) transform that aligns ``moving`` to
``fixed`` by Mattes mutual information (it is contrast-agnostic: T1 against FLAIR), over a three-level pyramid, and
resamples ``moving`` onto ``fixed``'s grid with linear interpolation.

nibabel affines map voxels to RAS+ millimetres, ITK's geometry to LPS+: :func:`itk_geometry` flips the first two
world axes, so an image built here lies where ``sitk.ReadImage`` of the same file puts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mslesion.data.volumes import Volume, check_not_constant
from mslesion.errors import RegistrationError

__all__ = ["RegistrationResult", "itk_geometry", "to_sitk", "register_to", "register_volume", "METRIC_SAMPLES"]

#: Voxels the registration metric samples at full resolution by default (:func:`register_to`).
METRIC_SAMPLES = 200_000

# RAS (nibabel) -> LPS (ITK): negate x and y of world coordinates
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


@dataclass
class RegistrationResult:
    """What :func:`register_to` found.

    Attributes:
        data: the moving image resampled onto the fixed grid, float32, the fixed file's voxel order ``(I, J, K)``.
        metric: the final Mattes mutual information (negative: lower is better aligned).
        parameters: Euler angles (rad, about x, y, z) and translation (mm, LPS) of the fixed -> moving transform.
        iterations: optimiser iterations at the finest level.
        stop: why the optimiser stopped (SimpleITK's description).
    """

    data: np.ndarray
    metric: float
    parameters: tuple[float, ...]
    iterations: int
    stop: str


def itk_geometry(affine: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """``(origin, spacing, direction)`` of SimpleITK for a nibabel (RAS) voxel -> world affine.

    Args:
        affine: 4x4 matrix mapping voxel ``(i, j, k)`` to RAS+ mm.

    Returns:
        origin (mm, LPS), spacing (mm per voxel along i, j, k) and the 3x3 direction cosines flattened row-major.
    """
    affine = np.asarray(affine, dtype=np.float64)
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    direction = _RAS_TO_LPS @ (affine[:3, :3] / spacing)
    origin = _RAS_TO_LPS @ affine[:3, 3]
    return tuple(map(float, origin)), tuple(map(float, spacing)), tuple(map(float, direction.ravel()))


def to_sitk(data: np.ndarray, affine: np.ndarray):
    """A ``SimpleITK.Image`` (float32) of a volume in nibabel voxel order ``(I, J, K)`` with its RAS affine."""
    import SimpleITK as sitk

    # SimpleITK arrays are indexed (k, j, i)
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(data, np.float32).transpose(2, 1, 0)))
    origin, spacing, direction = itk_geometry(affine)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    return image


def register_to(
    fixed: np.ndarray,
    fixed_affine: np.ndarray,
    moving: np.ndarray,
    moving_affine: np.ndarray,
    shrink_factors: Sequence[int] = (4, 2, 1),
    smoothing_mm: Sequence[float] = (2.0, 1.0, 0.0),
    iterations: int = 200,
    sampling: float | None = None,
    seed: int = 1,
    threads: int | None = None,
) -> RegistrationResult:
    """Rigidly register ``moving`` to ``fixed`` and resample it onto ``fixed``'s grid.

    Euler 3D transform initialised by ``CenteredTransformInitializer`` (GEOMETRY: the grids' centres), Mattes
    mutual information (50 bins, on a random ``sampling`` of the voxels drawn with ``seed``),
    regular-step gradient descent scaled by physical shift, pyramid ``shrink_factors`` with Gaussian smoothing
    ``smoothing_mm``, then linear resampling (0 outside ``moving``'s field of view).

    Args:
        fixed, moving: 3D volumes in their files' voxel order ``(I, J, K)``.
        fixed_affine, moving_affine: their nibabel (RAS) affines.
        sampling: fraction of the fixed voxels the metric reads at each level; default about
            :data:`METRIC_SAMPLES` at full resolution (2% to 20% of the voxels).
        seed: of the metric's voxel sample (fixed, so runs agree; multithreaded sums may differ in the last digits).
        threads: registration threads (default: SimpleITK's, all cores).

    Returns:
        A :class:`RegistrationResult`; ``data`` has ``fixed``'s shape.

    Raises:
        RuntimeError: SimpleITK's optimiser failed (e.g. the images do not overlap at all).
    """
    import SimpleITK as sitk

    fixed_img, moving_img = to_sitk(fixed, fixed_affine), to_sitk(moving, moving_affine)
    if sampling is None:
        # a fixed sample size, not a fraction: 20% of a 182x218x182 head costs 4x the time for no better fit
        sampling = min(max(METRIC_SAMPLES / np.size(fixed), 0.02), 0.2)
    initial = sitk.CenteredTransformInitializer(fixed_img, moving_img, sitk.Euler3DTransform(),
                                                sitk.CenteredTransformInitializerFilter.GEOMETRY)  # fmt: skip
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    method.SetMetricSamplingStrategy(method.RANDOM)
    # seed 0 would be SimpleITK's wall clock, a different sample every run
    method.SetMetricSamplingPercentage(float(sampling), max(int(seed), 1))
    method.SetInterpolator(sitk.sitkLinear)
    if threads:
        method.SetNumberOfThreads(int(threads))
    # steps in mm of the largest voxel shift a parameter change causes: rotations and shifts on one scale
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3, numberOfIterations=int(iterations),
                                                    relaxationFactor=0.5, gradientMagnitudeTolerance=1e-6)  # fmt: skip
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([int(f) for f in shrink_factors])
    method.SetSmoothingSigmasPerLevel([float(s) for s in smoothing_mm])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(initial, inPlace=False)
    transform = method.Execute(fixed_img, moving_img)
    resampled = sitk.Resample(moving_img, fixed_img, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    composite = sitk.CompositeTransform(transform)  # Execute wraps the optimised Euler transform
    params = tuple(float(p) for p in composite.GetNthTransform(composite.GetNumberOfTransforms() - 1).GetParameters())
    return RegistrationResult(
        data=sitk.GetArrayFromImage(resampled).transpose(2, 1, 0).astype(np.float32, copy=False),
        metric=float(method.GetMetricValue()),
        parameters=params,
        iterations=int(method.GetOptimizerIteration()),
        stop=method.GetOptimizerStopConditionDescription(),
    )


def register_volume(ref: Volume, moving: Volume, modality: str, warnings: list[str] | None = None) -> Volume:
    """``moving`` registered rigidly onto ``ref``'s grid (:func:`register_to`), as a :class:`Volume` on that grid.

    The volume keeps ``moving``'s path (the file it came from) and takes ``ref``'s affine and header; a line naming
    the file, the modality and the final metric is appended to ``warnings``.

    Raises:
        RegistrationError: SimpleITK could not register it (no overlap, too few samples).
        ConstantImageError: nothing of ``moving`` lands inside ``ref``'s field of view.
    """
    try:
        result = register_to(ref.data, ref.affine, moving.data, moving.affine)
    except RuntimeError as exc:  # SimpleITK's optimiser or metric, e.g. "too many samples map outside"
        said = " ".join(str(exc).split())[-200:]
        raise RegistrationError(moving.path, f"cannot register {modality} onto {ref.path.name}: {said}") from exc
    check_not_constant(result.data, moving.path, f"{modality} image registered onto {ref.path.name}")
    if warnings is not None:
        warnings.append(f"{moving.path}: {modality} lay on another grid than {ref.path.name}; registered rigidly "
                        f"onto it (Mattes mutual information {result.metric:.4f}, {result.iterations} iterations at "
                        "full resolution) and resampled linearly")  # fmt: skip
    return Volume(data=result.data, affine=ref.affine, path=moving.path, header=ref.header,
                  warnings=list(moving.warnings))  # fmt: skip
