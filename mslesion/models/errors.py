"""Exceptions of ``mslesion.models``; each says what is missing and what to do."""

from __future__ import annotations

from mslesion.errors import MslesionError

__all__ = ["ModelError", "WeightsUnavailableError", "BackboneUnavailableError", "EncoderModeError"]


class ModelError(MslesionError):
    """Base class of the errors raised while building or loading a model."""


class WeightsUnavailableError(ModelError):
    """Pretrained weights could not be fetched (offline) or the local file is missing.

    Attributes:
        url: the address Keras tried (``None`` for a missing local file).
        file_name: the file Keras expects in its cache.
        cache_dir: the Keras cache folder (``$KERAS_HOME/models`` or ``~/.keras/models``).
    """

    def __init__(self, message: str, url: str | None = None, file_name: str | None = None,
                 cache_dir: str | None = None):
        super().__init__(message)
        self.url = url
        self.file_name = file_name
        self.cache_dir = cache_dir


class BackboneUnavailableError(ModelError, ValueError):
    """A backbone this stack (Keras 3 + segmentation_models 1.0.1) cannot build or train."""


class EncoderModeError(ModelError, ValueError):
    """An ``encoder=`` mode the model cannot honour (no encoder, block index out of range)."""
