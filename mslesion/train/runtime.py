"""Where training runs: seeds, distribution strategy, mixed precision, environment record."""

from __future__ import annotations

import os
import platform
import sys

__all__ = ["input_pipeline", "set_seed", "set_deterministic", "determinism_state", "pick_strategy",
           "set_mixed_precision", "environment"]  # fmt: skip

#: TensorFlow reads this once, at import: "0" turns its oneDNN kernels off (recorded, not changed, here).
ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and the backend (weights initialisation, dropout, augmentation)."""
    import keras

    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    keras.utils.set_random_seed(seed)


def set_deterministic(enabled: bool) -> dict:
    """Make training repeat bit for bit on this machine; returns :func:`determinism_state`.

    Enabled: backend op determinism (TensorFlow's also runs ``tf.data`` maps holding
    random ops, i.e. the seeded augmentation layers, serially, in a fixed order).
    Seeds come from :func:`set_seed`. oneDNN and the thread counts are left as they
    are, and recorded: on one machine neither varies between runs, while results do
    change with the intra-op thread count and the CPU's instruction set (oneDNN's
    matrix kernels run even with ``TF_ENABLE_ONEDNN_OPTS=0``), so no setting here
    makes runs equal across CPUs (README, Reproducibility). Disabled: nothing is
    changed, so a process that ran a deterministic run stays deterministic; the
    returned state says what is in effect.
    """
    import keras

    if enabled and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif enabled and keras.backend.backend() == "torch":
        import torch

        torch.use_deterministic_algorithms(True)
    return determinism_state()


def determinism_state() -> dict:
    """What decides whether a run repeats: op determinism, oneDNN, thread counts (saved in environment.json)."""
    import keras

    backend = keras.backend.backend()
    # results change with the CPU and the intra-op thread count (summation order), so record both
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    model, isa = _cpu()
    state: dict = {"backend": backend, "cpu": model, "cpu_isa": isa, "schedulable_cpus": cpus}
    if backend == "tensorflow":
        import tensorflow as tf

        state.update({
            "op_determinism": _op_determinism_enabled(),
            "onednn": _onednn_enabled(),
            ONEDNN_ENV: os.environ.get(ONEDNN_ENV),
            # 0: TensorFlow's default (one thread per schedulable CPU, or TF_NUM_*_THREADS)
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "TF_NUM_INTRAOP_THREADS": os.environ.get("TF_NUM_INTRAOP_THREADS"),
            "TF_NUM_INTEROP_THREADS": os.environ.get("TF_NUM_INTEROP_THREADS"),
        })  # fmt: skip
    elif backend == "torch":
        import torch

        state.update({"op_determinism": torch.are_deterministic_algorithms_enabled(),
                      "intra_op_threads": torch.get_num_threads()})  # fmt: skip
    return state


#: instruction sets oneDNN picks its kernels by (virtual machines often report a generic CPU name)
_ISA_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "asimd", "sve")


def _cpu() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() in ("flags", "Features"):
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return model, [flag for flag in _ISA_FLAGS if flag in flags]


def _onednn_enabled() -> bool:
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())  # what TensorFlow read at import
    except (ImportError, AttributeError):
        return os.environ.get(ONEDNN_ENV, "1").lower() not in ("0", "false")


def _op_determinism_enabled() -> bool | None:
    try:
        from tensorflow.python.framework import config

        return bool(config.is_op_determinism_enabled())
    except (ImportError, AttributeError):
        return None


_STRATEGIES: dict[str, object] = {}


def pick_strategy(kind: str = "auto"):
    """A ``tf.distribute`` strategy: TPU if present, several GPUs mirrored, else the default.

    The same object for the same ``kind`` for the whole Python session: a notebook's
    device cell, its training runs, searches and evaluations share one strategy (a TPU
    system is initialised once).

    Args:
        kind: ``auto``, ``tpu``, ``mirrored`` (all visible GPUs, or all logical CPUs
            when there is no GPU, used to test the multi-replica path), ``default``.
    """
    if kind not in _STRATEGIES:
        _STRATEGIES[kind] = _new_strategy(kind)
    return _STRATEGIES[kind]


def _new_strategy(kind: str):
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


def needs_static_shapes(strategy) -> bool:
    """Whether ``strategy`` wants every batch the same shape (TPU: the last partial batch is dropped)."""
    return "TPU" in type(strategy).__name__


def describe_devices() -> list[dict]:
    """The accelerators TensorFlow sees: ``{"kind": "TPU"|"GPU", "name", "compute_capability"}`` (empty: CPU only)."""
    import tensorflow as tf

    devices = [{"kind": "TPU", "name": d.name, "compute_capability": None}
               for d in tf.config.list_logical_devices("TPU")]  # fmt: skip
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        devices.append({"kind": "GPU", "name": details.get("device_name", gpu.name),
                        "compute_capability": details.get("compute_capability")})  # fmt: skip
    return devices


def input_pipeline(requested: str, devices: list[dict], in_memory: bool) -> str:
    """The ``make_dataset`` source to train with: ``requested`` unless it is ``"auto"``.

    ``auto`` gathers batches in the TensorFlow graph (``"graph"``) when an accelerator is used and
    the slices are in host memory: a GPU or TPU fed by a 2-4 core host must not wait on Python per
    batch. On the CPU alone the Python gather (``"generator"``) costs nothing that matters and keeps
    memory-mapped slices out of RAM.
    """
    if requested not in ("auto", "graph", "generator"):
        raise ValueError(f"input_pipeline must be auto, graph or generator, not {requested!r}")
    if requested != "auto":
        return requested
    return "graph" if in_memory and devices else "generator"


def augment_place(requested: str, devices: list[dict], jit_compile: bool) -> str:
    """Where augmentation runs: ``"host"`` (a ``tf.data`` map) or ``"device"`` (in the train step).

    ``auto``: on the device when a GPU trains without XLA, so 2-4 host cores never cap it. On a
    TPU and with ``jit_compile`` the host: the warps use an op XLA cannot compile (see
    :mod:`mslesion.train.augmentation`); TPU hosts have many cores. On the CPU alone both places are the
    same cores, and the host map overlaps with the step.

    Raises:
        ValueError: an unknown place, or ``"device"`` where XLA compiles the step.
    """
    if requested not in ("auto", "host", "device"):
        raise ValueError(f"augment_on must be auto, host or device, not {requested!r}")
    xla = jit_compile or any(d["kind"] == "TPU" for d in devices)
    if requested == "device" and xla:
        raise ValueError("augment_on='device' needs a step XLA does not compile (no TPU, no jit_compile): "
                         "Keras' rotation/zoom warp (ImageProjectiveTransformV3) has no XLA kernel; use 'host'")  # fmt: skip
    if requested != "auto":
        return requested
    return "device" if not xla and any(d["kind"] == "GPU" for d in devices) else "host"


def mixed_precision_policy(devices: list[dict]) -> str:
    """The dtype policy that pays on ``devices`` (see :func:`describe_devices`).

    TPU: ``mixed_bfloat16``. GPUs all of compute capability >= 7.0 (tensor cores: T4,
    V100, A100, H100): ``mixed_float16``. Older GPUs (P100, K80) and the CPU: ``float32``,
    since float16 there is slower or no faster.
    """
    kinds = {d["kind"] for d in devices}
    if "TPU" in kinds:
        return "mixed_bfloat16"
    gpus = [d for d in devices if d["kind"] == "GPU"]
    if gpus and all(d.get("compute_capability") and tuple(d["compute_capability"]) >= (7, 0) for d in gpus):
        return "mixed_float16"
    return "float32"


def auto_mixed_precision() -> bool:
    """Whether mixed precision pays on this machine (:func:`mixed_precision_policy`)."""
    return mixed_precision_policy(describe_devices()) != "float32"


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

    from mslesion import __version__

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
    info["determinism"] = determinism_state()
    return info
