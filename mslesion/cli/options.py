"""What the subcommands share: ``KEY=VALUE`` flags, ``--config`` files layered under flags, the run options."""

from __future__ import annotations

from pathlib import Path

__all__ = ["key_value_pairs", "json_pairs", "config_from", "config_file", "add_mixed_precision",
           "mixed_precision", "add_config_flags", "flag_values", "config_from_flags"]  # fmt: skip


def key_value_pairs(items: list[str] | None, flag: str) -> dict[str, str] | None:
    if not items:
        return None
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"{flag} expects MODALITY=PATTERN, got {item!r}")
        key, value = item.split("=", 1)
        out[key] = value
    return out


def json_pairs(items: list[str] | None, flag: str) -> dict:
    """``key=value`` pairs whose values are JSON (``filter_num=[16,32,64]``), else plain strings."""
    import json

    out = {}
    for key, value in (key_value_pairs(items, flag) or {}).items():
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def config_from(a, cls, mapping: dict, defaults: dict | None = None) -> object:
    """A config dataclass from ``defaults``, then ``--config file.json``, then the flags given."""
    base = dict(defaults or {})
    for layer in (config_file(a), {k: v for k, v in mapping.items() if v is not None}):
        if "model_params" in layer and "model" not in layer and "model_params" in base:
            # parameters for the model chosen below this layer (e.g. weights for the recipe's encoder)
            layer = {**layer, "model_params": {**base["model_params"], **layer["model_params"]}}
        base.update(layer)
    return cls.from_dict(base)


def config_file(a) -> dict:
    import json

    return json.loads(Path(a.config).read_text()) if a.config else {}


def add_mixed_precision(p) -> None:
    """``--mixed-precision [auto|on|off]``: RunConfig.mixed_precision, with ``auto`` decided on this machine."""
    p.add_argument("--mixed-precision", choices=("auto", "on", "off"), nargs="?", const="on", default=None,
                   help="float16/bfloat16 compute; auto: where it pays (GPU of compute capability >= 7, TPU)")


def mixed_precision(choice: str | None) -> bool | None:
    if choice is None:
        return None
    if choice == "auto":
        from mslesion.train.runtime import auto_mixed_precision

        return auto_mixed_precision()
    return choice == "on"


def _hint_kind(hint) -> tuple[type, object]:
    """The element type and ``nargs`` of a field's annotation (``int | None`` -> int; ``tuple[int, int]`` -> int, 2)."""
    import types
    from typing import Union, get_args, get_origin

    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        rest = [x for x in args if x is not type(None)]
        return _hint_kind(rest[0]) if len(rest) == 1 else (str, None)
    if origin is tuple:
        return (args[0] if args else str), ("+" if not args or Ellipsis in args else len(args))
    if origin is list:
        return (args[0] if args else str), "+"
    return (hint if isinstance(hint, type) else str), None


def _is_tuple(hint) -> bool:
    from typing import get_args, get_origin

    return get_origin(hint) is tuple or any(get_origin(x) is tuple for x in get_args(hint))


def _metadata(cls, f) -> dict:
    """The flag metadata of field ``f``, with what a base class said of it where a subclass only changed the default."""
    from dataclasses import fields, is_dataclass

    meta = {}
    for base in reversed(cls.__mro__):
        if is_dataclass(base):
            meta.update(next((g.metadata for g in fields(base) if g.name == f.name), {}))
    return meta


def _flag_name(f, meta: dict) -> str:
    if "flag" in meta:
        return meta["flag"]
    # a switch that is on by default is turned off by --no-<name>
    return ("--no-" if f.default is True else "--") + f.name.replace("_", "-")


def add_config_flags(p, cls, skip: tuple[str, ...] = (), layered: bool = False, shown: dict | None = None) -> None:
    """One flag per field of the config dataclass ``cls``, from its annotation, default and ``field(metadata=...)``.

    Metadata keys: ``flag`` (default ``--field-name``; ``--no-field-name`` for switches on by default), ``help``,
    ``choices``, ``metavar``, ``nargs``, ``positional`` (an optional positional argument) and ``pairs`` (a dict given
    as repeated ``KEY=VALUE`` flags, named by its metavar; ``json``: the values are parsed as JSON).
    Tuples take as many values as their annotation holds, lists one or more.

    ``layered``: every flag defaults to None, so that flags given override a ``--config`` file and a recipe
    (:func:`config_from`) and flags not given leave them alone; the help then states the field's default, or the
    value ``shown`` gives for it (e.g. a recipe's).
    """
    from dataclasses import MISSING, fields
    from typing import get_type_hints

    hints = get_type_hints(cls)
    for f in fields(cls):
        if f.name in skip:
            continue
        meta = _metadata(cls, f)
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else None)
        help_text = meta.get("help")
        default = (shown or {}).get(f.name, default)
        if layered and default not in (None, False, True, {}, []) and "pairs" not in meta:
            text = " ".join(map(str, default)) if isinstance(default, (tuple, list)) else default
            help_text = f"{help_text} (default {text})" if help_text else f"default {text}"
        kind, nargs = _hint_kind(hints[f.name])
        kwargs = {"help": help_text}
        if "pairs" in meta:
            kwargs.update(action="append", metavar=meta["pairs"])
        elif kind is bool:
            kwargs.update(action="store_false" if f.default is True else "store_true")
            if layered:
                kwargs["default"] = None
        else:
            kwargs.update(type=kind, default=None if layered else (
                list(default) if isinstance(default, tuple) else default))
            if meta.get("nargs", nargs) is not None:
                kwargs["nargs"] = meta.get("nargs", nargs)
            for key in ("choices", "metavar"):
                if key in meta:
                    kwargs[key] = meta[key]
        if meta.get("positional"):
            kwargs.update(nargs="?")
            p.add_argument(f.name, **kwargs)
        else:
            p.add_argument(_flag_name(f, meta), dest=f.name, **kwargs)


def flag_values(a, cls, skip: tuple[str, ...] = ()) -> dict:
    """The fields of ``cls`` that :func:`add_config_flags` flags set, converted (tuples, ``KEY=VALUE`` pairs)."""
    from dataclasses import fields
    from typing import get_type_hints

    hints = get_type_hints(cls)
    values = {}
    for f in fields(cls):
        value = getattr(a, f.name, None) if f.name not in skip else None
        if value is None:
            continue
        meta = _metadata(cls, f)
        if "pairs" in meta:
            value = (json_pairs if meta.get("json") else key_value_pairs)(value, _flag_name(f, meta))
        elif isinstance(value, list) and _is_tuple(hints[f.name]):
            value = tuple(value)
        values[f.name] = value
    return values


def config_from_flags(a, cls, skip: tuple[str, ...] = ()):
    """The config dataclass ``cls`` from the flags :func:`add_config_flags` added (flags not layered)."""
    return cls(**flag_values(a, cls, skip))
