"""Exceptions raised on bad input; each names the file and the problem."""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "MslesionError",
    "ExportError",
    "DataError",
    "CorruptFileError",
    "NotThreeDError",
    "ShapeMismatchError",
    "AffineMismatchError",
    "NonFiniteError",
    "NonBinaryMaskError",
    "EmptyMaskError",
    "MissingModalityError",
    "MissingMaskError",
    "NoCasesFoundError",
    "BadPatientIdError",
    "UnknownOptionError",
    "ConfigError",
    "BadVoxelSizeError",
    "ConstantImageError",
    "BrainMaskError",
    "RegistrationError",
    "ExternalToolError",
    "DamagedCheckpointError",
    "RunNotFoundError",
    "MslesionWarning",
    "ObliqueAffineWarning",
    "FAILURE_COLUMNS",
    "failure_row",
]

#: The columns of every ``failures.csv``: one row per patient a batch job could not process.
FAILURE_COLUMNS = ["patient", "error", "message"]


def failure_row(patient: str, exc: BaseException, message: str | None = None) -> dict:
    """The ``failures.csv`` row of ``patient``: the exception's type and message (``message`` overrides it)."""
    return {"patient": patient, "error": type(exc).__name__, "message": str(exc) if message is None else message}


class MslesionError(Exception):
    """Base class of every error mslesion raises on purpose."""


class DataError(MslesionError, ValueError):
    """A problem with one input file; ``path`` names it.

    The message always starts with the file, so a batch log line reads
    ``/data/Patient-3/3-Flair.nii.gz: image is 4D (512, 512, 19, 2); expected 3D``.
    """

    def __init__(self, path: str | Path | None, problem: str):
        self.path = Path(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


class CorruptFileError(DataError):
    """The file cannot be read: truncated, not an image, wrong format."""


class NotThreeDError(DataError):
    """A volume that is not 3D (4D time series, 2D slice)."""


class ShapeMismatchError(DataError):
    """Image and mask (or two modalities) differ in shape."""


class AffineMismatchError(DataError):
    """Image and mask (or two modalities) lie on different voxel grids."""


class NonFiniteError(DataError):
    """NaN or Inf voxels."""


class NonBinaryMaskError(DataError):
    """A mask holding labels other than background and lesion."""


class EmptyMaskError(DataError):
    """A mask with no lesion voxel where lesions are required."""


class MissingModalityError(DataError):
    """A patient folder lacks the requested modality image or mask."""


class MissingMaskError(DataError):
    """An image slice with no matching mask file (TIFF datasets)."""


class NoCasesFoundError(DataError):
    """A folder or pattern that matched no patient at all."""


class BadPatientIdError(DataError):
    """A patient id (taken from a folder or file name) that cannot name an output folder safely."""


class BadVoxelSizeError(DataError):
    """A voxel size that is zero, negative or NaN (header ``pixdim`` or affine): volumes in mL would be wrong."""


class ConstantImageError(DataError):
    """An image whose voxels all hold one value (all-zero export, blank series): nothing to segment."""


class BrainMaskError(DataError):
    """A brain mask for skull stripping that is missing, empty, not binary or off the image's voxel grid."""


class RegistrationError(DataError):
    """A modality that could not be registered to the first one (the optimiser failed, no overlap)."""


class DamagedCheckpointError(CorruptFileError):
    """A run's ``best.keras`` / ``final.keras`` that is truncated or not a Keras model file."""


class RunNotFoundError(MslesionError, FileNotFoundError):
    """A run folder that does not exist, or lacks what a trained run holds (config, checkpoint).

    A :class:`FileNotFoundError` too, so callers that caught that before still do.
    """

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")  # one argument: OSError would read two as (errno, strerror)


class ExternalToolError(MslesionError, RuntimeError):
    """An external program an option relies on (HD-BET) is not installed or failed; the message says what to do."""


class MslesionWarning(UserWarning):
    """Base class of the warnings mslesion gives about inputs it still accepts."""


class ObliqueAffineWarning(MslesionWarning):
    """A volume whose voxel axes are tilted against the scanner axes; it is sliced along the nearest axes."""


class UnknownOptionError(MslesionError, KeyError):
    """An option value (loss name, ...) that is not one of the known ones; the message lists them."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(MslesionError, ValueError):
    """Options that contradict each other or the run they point at; the message names them."""


class ExportError(MslesionError, RuntimeError):
    """A run cannot be exported: a package the format needs is missing, or the export does not match the model."""
