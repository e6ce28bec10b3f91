"""mslesion: MS lesion segmentation toolkit (data prep, models, evaluation, report)."""

import os as _os

# segmentation_models picks its Keras at import time and only works with
# tf.keras on Keras 3; set it before anything can import it.
_os.environ.setdefault("SM_FRAMEWORK", "tf.keras")

__version__ = "0.1.0"
