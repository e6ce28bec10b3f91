"""Run a snippet under another Keras backend (JAX, PyTorch) in a fresh interpreter.

Keras picks its backend once per process, so a second backend needs a
subprocess. The snippet runs with ``KERAS_BACKEND`` set; it should ``print``
what the test checks. Tests skip (saying why) when the backend's package is
not installed.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

BACKEND_PACKAGES = {"jax": "jax", "torch": "torch", "tensorflow": "tensorflow"}
OTHER_BACKENDS = ("jax", "torch")


def run_under_backend(backend: str, code: str, timeout: int = 600) -> str:
    """Run ``code`` with ``KERAS_BACKEND=backend``; return its stdout (fails the test on a non-zero exit)."""
    if importlib.util.find_spec(BACKEND_PACKAGES[backend]) is None:
        pytest.skip(f"Keras backend {backend!r} is not installed ({BACKEND_PACKAGES[backend]} missing)")
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=timeout)  # fmt: skip
    assert done.returncode == 0, f"{backend} run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def assert_no_tensorflow(module: str) -> None:
    """Importing ``module`` under the JAX backend must not import TensorFlow (backend-agnostic code)."""
    out = run_under_backend("jax", f"import sys, {module}; print('tensorflow' in sys.modules)")
    assert out.strip().splitlines()[-1] == "False", f"{module} imports tensorflow"
