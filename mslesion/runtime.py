"""Where training runs: seeds, distribution strategy, mixed precision, environment record."""

from __future__ import annotations

import os
import platform
import sys

__all__ = ["set_seed", "pick_strategy", "set_mixed_precision", "environment"]


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and the backend (weights initialisation, dropout, augmentation)."""
    import keras

    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    keras.utils.set_random_seed(seed)


def pick_strategy(kind: str = "auto"):
    """A ``tf.distribute`` strategy: TPU if present, several GPUs mirrored, else the default.

    Args:
        kind: ``auto``, ``tpu``, ``mirrored`` (all visible GPUs, or all logical CPUs
            when there is no GPU, used to test the multi-replica path), ``default``.
    """
    import tensorflow as tf

    if kind in ("auto", "tpu"):
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            return tf.distribute.TPUStrategy(resolver)
        except (ValueError, RuntimeError, tf.errors.NotFoundError):
            if kind == "tpu":
                raise RuntimeError("no TPU found (kind='tpu')") from None
    gpus = tf.config.list_logical_devices("GPU")
    if kind == "mirrored" or (kind == "auto" and len(gpus) > 1):
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if kind not in ("auto", "default", "mirrored", "tpu"):
        raise ValueError(f"unknown strategy {kind!r}; use auto, tpu, mirrored or default")
    return tf.distribute.get_strategy()


def set_mixed_precision(enabled: bool) -> str:
    """Set Keras' global dtype policy; returns its name. mixed_bfloat16 on TPU, mixed_float16 elsewhere."""
    import keras
    import tensorflow as tf

    if not enabled:
        policy = "float32"
    elif tf.config.list_logical_devices("TPU"):
        policy = "mixed_bfloat16"
    else:
        policy = "mixed_float16"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def environment(strategy=None) -> dict:
    """Versions and devices, saved next to every run."""
    import keras
    import numpy as np
    import tensorflow as tf

    from . import __version__

    info = {
        "mslesion": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "devices": [d.name for d in tf.config.list_logical_devices()],
        "dtype_policy": keras.mixed_precision.global_policy().name,
    }
    for name in ("segmentation_models", "keras_unet_collection", "keras_tuner"):
        module = sys.modules.get(name)
        if module is not None:
            info[name] = getattr(module, "__version__", "unknown")
    if strategy is not None:
        info["strategy"] = type(strategy).__name__
        info["replicas"] = int(strategy.num_replicas_in_sync)
    return info
