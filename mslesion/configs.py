"""Config dataclasses from plain dicts (JSON, notebooks, the CLI): unknown keys are refused, never dropped."""

from __future__ import annotations

from dataclasses import fields

__all__ = ["config_from_dict"]


def config_from_dict(cls, d: dict, what: str):
    """Build the config dataclass ``cls`` from ``d``, refusing unknown keys (typos)."""
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} options {sorted(unknown)}")
    return cls(**d)
