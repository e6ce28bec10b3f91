"""What the subcommands share: ``KEY=VALUE`` flags, ``--config`` files layered under flags, the run options."""

from __future__ import annotations

from pathlib import Path

__all__ = ["key_value_pairs", "json_pairs", "config_from", "config_file", "add_run_options", "run_options",
           "mixed_precision", "add_config_flags", "config_from_flags"]  # fmt: skip


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


def add_run_options(p) -> None:
    p.add_argument("dataset", nargs="?", help="prepared slice dataset folder (from mslesion prep)")
    p.add_argument("--config", help="JSON file of options; flags override it")
    p.add_argument("--model", help="registry name, see `mslesion models`")
    p.add_argument("--model-param", action="append", metavar="KEY=JSON", help="e.g. backbone=vgg16, filter_num=[16,32,64]")
    p.add_argument("--loss", help="bce, dice, bce_dice, tversky, focal_tversky")
    p.add_argument("--loss-param", action="append", metavar="KEY=JSON")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--fold", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--runs-root")
    p.add_argument("--tag")
    p.add_argument("--run-dir")


def run_options(a) -> dict:
    return {
        "dataset": a.dataset, "model": a.model, "model_params": json_pairs(a.model_param, "--model-param") or None,
        "loss": a.loss, "loss_params": json_pairs(a.loss_param, "--loss-param") or None, "epochs": a.epochs,
        "batch_size": a.batch_size, "fold": a.fold, "seed": a.seed, "runs_root": a.runs_root, "tag": a.tag,
        "run_dir": a.run_dir,
    }  # fmt: skip


def mixed_precision(choice: str | None) -> bool | None:
    if choice is None:
        return None
    if choice == "auto":
        from mslesion.train.runtime import auto_mixed_precision

        return auto_mixed_precision()
    return choice == "on"


def add_config_flags(p, cls, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of the config dataclass ``cls``, from its default and ``field(metadata=...)``.

    Metadata keys: ``flag`` (default ``--field-name``), ``help``, ``choices``, ``metavar``, ``nargs`` ("+" for a
    tuple of any length) and ``pairs`` (a dict given as repeated ``KEY=VALUE`` flags, named by its metavar).
    Booleans that default to False become switches; tuples take as many values as their default holds.
    """
    from dataclasses import MISSING, fields

    for f in fields(cls):
        if f.name in skip:
            continue
        meta = f.metadata
        default = f.default if f.default is not MISSING else f.default_factory()
        kwargs = {"dest": f.name, "help": meta.get("help")}
        if "pairs" in meta:
            kwargs.update(action="append", metavar=meta["pairs"])
        elif isinstance(default, bool) and not default:
            kwargs.update(action="store_true")
        else:
            kwargs.update(default=list(default) if isinstance(default, tuple) else default)
            if isinstance(default, tuple):
                kwargs.update(nargs=meta.get("nargs", len(default)), type=type(default[0]))
            elif default is not None:
                kwargs.update(type=type(default))
            for key in ("choices", "metavar", "nargs"):
                if key in meta:
                    kwargs[key] = meta[key]
        p.add_argument(meta.get("flag", "--" + f.name.replace("_", "-")), **kwargs)


def config_from_flags(a, cls, skip: tuple[str, ...] = ()):
    """The config dataclass ``cls`` from the flags :func:`add_config_flags` added."""
    from dataclasses import MISSING, fields

    values = {}
    for f in fields(cls):
        if f.name in skip:
            continue
        value = getattr(a, f.name)
        if "pairs" in f.metadata:
            value = key_value_pairs(value, f.metadata.get("flag", "--" + f.name.replace("_", "-")))
        elif isinstance(f.default if f.default is not MISSING else f.default_factory(), tuple):
            value = tuple(value)
        values[f.name] = value
    return cls(**values)
