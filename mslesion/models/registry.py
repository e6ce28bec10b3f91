"""Model registry: a dict, a decorator, one builder.

Keys are ``<source>.<arch>`` (``sm.unet``, ``kuc.att_unet``). Every builder
takes ``(input_shape, num_classes=1, ...)`` and returns an uncompiled
``keras.Model`` mapping ``(B, H, W, C)`` to sigmoid probabilities
``(B, H, W, num_classes)``. Zoo libraries are imported inside the builders,
so importing this module is cheap and never needs them.
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import keras

from mslesion.models.errors import ModelError

__all__ = ["ModelSpec", "MODELS", "UnknownModelError", "register", "model_spec", "build_model", "list_models",
           "count_params"]  # fmt: skip


class UnknownModelError(ModelError, KeyError):
    """A model name the registry does not hold; the message gives close matches and every known name.

    A :class:`KeyError` too, as the registry raised before.
    """

    def __str__(self) -> str:  # KeyError would show the message quoted, as a repr
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry.

    Attributes:
        name: registry key ``<source>.<arch>``.
        builder: ``builder(input_shape, num_classes=1, **params) -> keras.Model``.
        source: ``"sm"`` (segmentation_models), ``"kuc"`` (keras-unet-collection), ...
        description: one line for listings.
        requires: importable modules the builder needs.
        defaults: the builder's keyword defaults (for listings).
        check: optional ``check() -> reason | None``, a further availability test.
        example_input: input shape listings build the model at (3D models: ``(D, H, W, C)``).
    """

    name: str
    builder: Callable[..., keras.Model]
    source: str
    description: str = ""
    requires: tuple[str, ...] = ()
    defaults: dict = field(default_factory=dict)
    check: Callable[[], str | None] | None = None
    example_input: tuple[int, ...] = (256, 256, 3)  # what listings build it at; (D, H, W, C) for 3D models

    def availability(self) -> tuple[bool, str | None]:
        """``(True, None)`` when every required module imports, else ``(False, reason)``."""
        missing = [m for m in self.requires if importlib.util.find_spec(m) is None]
        if missing:
            return False, f"missing package(s): {', '.join(missing)}"
        reason = self.check() if self.check is not None else None
        return (reason is None), reason


MODELS: dict[str, ModelSpec] = {}


def _defaults(builder: Callable) -> dict:
    params = inspect.signature(builder).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def register(name: str, **info) -> Callable:
    """Decorator adding a builder to :data:`MODELS` under ``name``.

    Args:
        name: ``<source>.<arch>``; the source defaults to the part before the dot.
        **info: ``description=``, ``requires=`` (module names), ``source=``,
            ``check=`` (a callable returning why the model is unavailable, or None),
            ``example_input=`` (shape listings build it at; default ``(256, 256, 3)``).

    Raises:
        KeyError: ``name`` is already registered.
    """

    def add(builder: Callable) -> Callable:
        if name in MODELS:
            raise KeyError(f"model {name!r} is already registered")
        source = info.get("source", name.split(".", 1)[0])
        MODELS[name] = ModelSpec(
            name=name,
            builder=builder,
            source=source,
            description=info.get("description", _first_line(builder.__doc__)),
            requires=tuple(info.get("requires", ())),
            defaults=_defaults(builder),
            check=info.get("check"),
            example_input=tuple(info.get("example_input", (256, 256, 3))),
        )
        return builder

    return add


def build_model(name: str, **params) -> keras.Model:
    """Build registry model ``name`` (uncompiled, sigmoid output).

    Args:
        name: a key of :data:`MODELS`, e.g. ``"kuc.unet"``.
        **params: builder parameters; ``input_shape=(H, W, C)`` is required,
            ``num_classes`` defaults to 1. See each builder's docstring.

    Raises:
        UnknownModelError: unknown ``name`` (a KeyError; the message lists the known names).
    """
    return model_spec(name).builder(**params)


def model_spec(name: str) -> ModelSpec:
    """The registry entry of ``name``; call it to check a name before any work is done.

    Raises:
        UnknownModelError: unknown ``name``, with close matches and the known names.
    """
    if name in MODELS:
        return MODELS[name]
    known = sorted(MODELS)
    close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.7)
    # also match the architecture alone: "unet" -> kuc.unet, sm.unet
    close += [k for k in known if k.split(".", 1)[-1] == str(name).split(".")[-1] and k not in close]
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UnknownModelError(f"{name}: unknown model; {hint}known: {', '.join(known)} (see `mslesion models`)")


def list_models() -> list[dict]:
    """One dict per registry entry: name, source, description, defaults, available, reason."""
    rows = []
    for name in sorted(MODELS):
        spec = MODELS[name]
        available, reason = spec.availability()
        rows.append(
            {
                "name": name,
                "source": spec.source,
                "description": spec.description,
                "defaults": dict(spec.defaults),
                "available": available,
                "reason": reason,
                "example_input": spec.example_input,
            }
        )
    return rows


def count_params(model: keras.Model) -> dict[str, int]:
    """Parameter counts as Keras' ``summary()`` prints them.

    Returns:
        ``{"trainable": ..., "non_trainable": ..., "total": ...}`` (ints).
    """
    trainable = sum(_size(w.shape) for w in model.trainable_weights)
    non_trainable = sum(_size(w.shape) for w in model.non_trainable_weights)
    return {"trainable": trainable, "non_trainable": non_trainable, "total": trainable + non_trainable}


def _first_line(doc: str | None) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0] if lines else ""


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n
