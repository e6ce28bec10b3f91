"""Re-measure :data:`mslesion.models.sm.SM_BACKBONES`: which sm backbones build and train here.

``python -m mslesion.models.survey [arch] [backbone ...]`` prints one line per
backbone (``works`` or ``fails: <reason>``); it builds each model with random
weights at 64x64x3 (128x128 when the backbone needs more), compiles it with
binary cross-entropy and runs one ``fit`` step on a batch of 2. The whole
Unet survey takes about 20 minutes on 2 CPU cores (senet154 alone ~5).
"""

from __future__ import annotations

import gc
import sys
import time

import keras
import numpy as np

__all__ = ["survey_backbone", "survey"]


def survey_backbone(backbone: str, arch: str = "unet", size: int = 64) -> tuple[str, str]:
    """Build sm ``arch`` on ``backbone`` and train one step; return ``(status, note)``."""
    from mslesion.models.sm import import_sm

    sm = import_sm()
    build = {"unet": sm.Unet, "fpn": sm.FPN, "linknet": sm.Linknet}[arch]
    start = time.perf_counter()
    try:
        try:
            model = build(backbone, input_shape=(size, size, 3), classes=1, activation="sigmoid", encoder_weights=None)
        except ValueError as exc:
            if "Input size must be at least" not in str(exc):
                raise
            size = 128
            model = build(backbone, input_shape=(size, size, 3), classes=1, activation="sigmoid", encoder_weights=None)
        model.compile(optimizer="adam", loss="binary_crossentropy")
        rng = np.random.default_rng(0)
        x = rng.random((2, size, size, 3), dtype=np.float32)
        y = (rng.random((2, size, size, 1)) > 0.5).astype(np.float32)
        loss = model.fit(x, y, epochs=1, verbose=0).history["loss"][0]
        if not np.isfinite(loss):
            return "fails", f"non-finite loss {loss}"
        note = f"{model.count_params() / 1e6:.1f}M params, {time.perf_counter() - start:.0f} s at {size} px"
        return "works", note
    except Exception as exc:  # the survey records every failure as a reason
        first = str(exc).splitlines()[0] if str(exc) else ""
        return "fails", f"{type(exc).__name__}: {first[:160]}"
    finally:
        keras.backend.clear_session()
        gc.collect()


def survey(arch: str = "unet", backbones=None) -> dict[str, tuple[str, str]]:
    """Survey ``backbones`` (default: all of ``sm.get_available_backbone_names()``), printing as it goes."""
    from mslesion.models.sm import import_sm

    results = {}
    for name in backbones or import_sm().get_available_backbone_names():
        results[name] = survey_backbone(name, arch)
        print(f"{name:18s} {arch:8s} {results[name][0]:6s} {results[name][1]}", flush=True)
    return results


if __name__ == "__main__":
    survey(sys.argv[1] if len(sys.argv) > 1 else "unet", sys.argv[2:] or None)
