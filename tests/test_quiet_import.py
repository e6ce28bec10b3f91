"""TensorFlow's start-up lines are filtered from the CLI's stderr; everything else still comes through."""

import os
import subprocess
import sys

import pytest

from mslesion.env.quiet_import import filter_noise

NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    "I0000 00:00:1796230148.631041   10522 port.cc:153] oneDNN custom operations are on. You may see slightly\n",
    "I0000 00:00:17962 10270 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU\n",
]


def test_filter_noise_drops_only_the_known_start_up_lines():
    real = "E0000 cuda_dnn.cc:8] Could not load cuDNN\nTraceback (most recent call last):\n"
    assert filter_noise("".join(NOISE) + real) == real
    assert filter_noise("") == ""


def _stderr_of(code: str, **env) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"} | env
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stderr


@pytest.mark.slow
def test_cli_import_is_quiet_unless_the_user_set_the_log_level():
    code = ("from mslesion.env.quiet_import import import_tensorflow\nimport mslesion\n"
            "tf = import_tensorflow(quiet=mslesion.QUIET_TENSORFLOW)\n"
            "import sys; print('after', tf.__version__, file=sys.stderr)")  # fmt: skip
    loud = _stderr_of(code, TF_CPP_MIN_LOG_LEVEL="0")
    if not any(line.strip() and filter_noise(line) == "" for line in loud.splitlines(keepends=True)):
        pytest.skip("this TensorFlow prints none of the known start-up lines: nothing to filter")
    quiet = _stderr_of(code)
    assert "after" in quiet and filter_noise(quiet) == quiet, quiet
