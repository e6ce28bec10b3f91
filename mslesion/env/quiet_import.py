"""Import TensorFlow without its start-up chatter on the terminal.

``TF_CPP_MIN_LOG_LEVEL`` hides TensorFlow's own INFO lines, but TensorFlow 2.16+ writes a few lines
through absl before its log level is read (``All log messages before absl::InitializeLog() ...``,
``oneDNN custom operations are on ...``): they are written by C++ straight to file descriptor 2, so
Python's ``sys.stderr`` cannot filter them. :func:`import_tensorflow` points descriptor 2 at a
temporary file during the import and then replays every line except those known start-up lines.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

__all__ = ["STARTUP_NOISE", "import_tensorflow", "filter_noise"]

#: Lines TensorFlow prints at import whatever the log level; nothing in them needs the user.
STARTUP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|oneDNN custom operations are on"
    r"|cpu_feature_guard\.cc.*This TensorFlow binary is optimized"
    r"|To enable the following instructions.*rebuild TensorFlow"
)


def filter_noise(text: str) -> str:
    """``text`` without the lines that match :data:`STARTUP_NOISE`."""
    return "".join(line for line in text.splitlines(keepends=True) if not STARTUP_NOISE.search(line))


def import_tensorflow(quiet: bool | None = None):
    """Import and return ``tensorflow``; with ``quiet``, its known start-up lines are dropped.

    ``quiet=None``: quiet unless the user set ``TF_CPP_MIN_LOG_LEVEL`` (:data:`mslesion.QUIET_TENSORFLOW`).
    """
    if quiet is None:
        from mslesion import QUIET_TENSORFLOW

        quiet = QUIET_TENSORFLOW
    if not quiet or "tensorflow" in sys.modules:
        import tensorflow

        return tensorflow
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            rest = filter_noise(capture.read().decode("utf-8", "replace"))
            if rest:  # anything else (a real warning, a traceback's C++ part) still reaches the user
                sys.stderr.write(rest)
                sys.stderr.flush()
    return tensorflow
