"""Load any registry model saved as ``.keras`` (``model.save("model.keras")``).

Most registry models use standard Keras layers only and load with plain
``keras.models.load_model``. Some segmentation_models backbones need help,
which :func:`load_model` supplies after peeking at the saved config:

- SE and grouped-conv backbones (``seresnet*``, ``seresnext*``, ``senet154``,
  ``resnext*``) hold ``Lambda`` layers calling the module-level functions
  ``expand_dims`` / ``slice_tensor`` of ``classification_models``; Keras saves
  them by bare name, so they are passed as ``custom_objects``.
- EfficientNets hold ``FixedDropout`` layers, registered by importing
  ``efficientnet.tfkeras``.
- ``inceptionresnetv2`` holds a Python ``lambda``; Keras only loads that with
  ``safe_mode=False`` (it runs code stored in the file: only for files you trust).

Compiled models using mslesion's losses and metrics load too (their modules
are imported so the serialisable classes are registered).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import zipfile
import zlib
from pathlib import Path

import keras

from mslesion.models.errors import ModelError

__all__ = ["load_model", "zoo_custom_objects", "DamagedModelError"]


class DamagedModelError(ModelError, ValueError):
    """A ``.keras`` file that is truncated, corrupted or not a Keras model at all.

    Attributes:
        path: the file.
        reason: what is wrong with it, e.g. ``"not a zip archive"``.
    """

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: damaged or not a Keras model file ({reason}); save or train it again")


def _saved_config_text(path: Path) -> str:
    """The ``config.json`` of a ``.keras`` zip as text, after checking the archive is whole.

    Returns ``""`` for files that are not named ``.keras`` (legacy H5 and others are
    left to Keras).

    Raises:
        DamagedModelError: truncated, CRC errors, no ``config.json`` or weights, bad JSON.
    """
    if path.suffix != ".keras" or path.is_dir():
        return ""
    if not zipfile.is_zipfile(path):
        raise DamagedModelError(path, "not a zip archive: truncated, or another format")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            bad = archive.testzip()  # reads every member: a cut or bit-flipped file fails here, not in Keras
            if bad is not None:
                raise DamagedModelError(path, f"{bad} inside it fails its CRC check")
            if "config.json" not in names:
                raise DamagedModelError(path, "no config.json inside")
            if not any(n.startswith("model.weights") for n in names):
                raise DamagedModelError(path, "no model weights inside")
            text = archive.read("config.json").decode("utf8")
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, UnicodeDecodeError) as exc:
        raise DamagedModelError(path, f"{type(exc).__name__}: {exc}") from exc
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise DamagedModelError(path, f"config.json is not valid JSON: {exc}") from exc
    return text


def zoo_custom_objects(config_text: str = "") -> dict:
    """Custom objects the zoo models' configs refer to (importing only the libraries needed).

    Args:
        config_text: a saved model config (JSON text); ``""`` gives every
            object whose library is installed.
    """
    objects = {}
    everything = not config_text
    if everything or '"expand_dims"' in config_text or '"slice_tensor"' in config_text:
        with contextlib.suppress(ImportError):
            from classification_models.models import _common_blocks

            objects.update(expand_dims=_common_blocks.expand_dims, slice_tensor=_common_blocks.slice_tensor)
    if everything or "FixedDropout" in config_text:
        with contextlib.suppress(ImportError), contextlib.redirect_stdout(io.StringIO()):
            importlib.import_module("efficientnet.tfkeras")  # registers FixedDropout and swish globally
    return objects


def _has_python_lambda(config_text: str) -> bool:
    return '"__lambda__"' in config_text


def load_model(path, *, compile: bool = True, safe_mode: bool = True, custom_objects: dict | None = None,
               **kwargs) -> keras.Model:
    """Load a ``.keras`` file holding any registry model (compiled or not).

    Args:
        path: the ``.keras`` file.
        compile: restore the optimizer, loss and metrics when saved compiled.
        safe_mode: keep ``True`` unless the file holds a Python lambda
            (``sm`` with ``inceptionresnetv2``) and you trust it.
        custom_objects: extra objects, merged over those found automatically.
        **kwargs: passed to ``keras.models.load_model``.

    Raises:
        FileNotFoundError: no such file.
        DamagedModelError: a ``.keras`` file that is truncated or not a Keras model.
        ModelError: the model holds a Python lambda and ``safe_mode`` is True.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no saved model at {path}")
    # registers the objects a compiled model refers to (losses, metrics, learning-rate schedules)
    for module in ("mslesion.train.losses", "mslesion.train.keras_metrics", "mslesion.train.optimizers"):
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    config_text = _saved_config_text(path)
    if safe_mode and _has_python_lambda(config_text):
        raise ModelError(
            f"{path}: the model holds a Python lambda layer (segmentation_models inceptionresnetv2); "
            "Keras loads it only with load_model(path, safe_mode=False), which runs code from the file: "
            "do so only for files you trust"
        )
    objects = {**zoo_custom_objects(config_text), **(custom_objects or {})}
    return keras.models.load_model(path, custom_objects=objects, compile=compile, safe_mode=safe_mode, **kwargs)
