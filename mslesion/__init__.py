"""mslesion: MS lesion segmentation toolkit (data prep, models, evaluation, report)."""

import os as _os

# segmentation_models picks its Keras at import time and only works with
# tf.keras on Keras 3; set it before anything can import it.
_os.environ.setdefault("SM_FRAMEWORK", "tf.keras")
# TensorFlow's C++ start-up chatter (oneDNN, cpu_feature_guard, absl INFO/WARNING lines) buries the progress
# lines; it must be set before TensorFlow is imported. A user's own setting wins.
#: False when the user set TF_CPP_MIN_LOG_LEVEL: then the CLI shows TensorFlow's start-up lines as they come.
QUIET_TENSORFLOW = "TF_CPP_MIN_LOG_LEVEL" not in _os.environ
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

from mslesion import compat as _compat  # noqa: E402  (old flat module names resolve to the stage subpackages)

_compat.install()
