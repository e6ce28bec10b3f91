"""The registry as text (``mslesion models``): each model with its defaults and parameter count, the sm backbones."""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["describe_registry", "describe_sm_backbones"]


def describe_registry(counts: bool = True) -> Iterator[str]:
    """Lines naming each registry model, its description and defaults; with ``counts`` it is built at its
    example input size (256x256x3 for the 2D zoo) and its parameters counted."""
    import keras

    from mslesion.models.registry import build_model, count_params, list_models

    for info in list_models():
        line = f"{info['name']:<16} {info['description']}"
        if not info["available"]:
            line += f"  [unavailable: {info['reason']}]"
        yield line
        yield f"{'':<16} defaults: {info['defaults']}"
        if counts and info["available"]:
            shape = info["example_input"]
            c = count_params(build_model(info["name"], input_shape=shape))
            yield (f"{'':<16} {'x'.join(map(str, shape))} with defaults: {c['total']:,} params "
                   f"({c['trainable']:,} trainable, {c['non_trainable']:,} non-trainable)")  # fmt: skip
            keras.backend.clear_session()


def describe_sm_backbones() -> Iterator[str]:
    """Which segmentation_models backbones build and train here (:data:`mslesion.models.sm.SM_BACKBONES`)."""
    from mslesion.models.sm import SM_BACKBONES

    yield "segmentation_models backbones (sm.unet / sm.fpn / sm.linknet backbone=...):"
    for name, (status, note) in SM_BACKBONES.items():
        yield f"  {name:<18} {status:<6} {note}"
