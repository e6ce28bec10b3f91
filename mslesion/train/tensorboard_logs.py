"""TensorBoard logs of a run, in ``<run>/tensorboard/``: Keras' scalars per epoch and validation images.

``train/`` and ``validation/`` hold Keras' own epoch scalars (loss, Dice, IoU, accuracy, learning
rate); ``images/`` a few validation slices per epoch as one strip each: image | truth | prediction.
Open with ``tensorboard --logdir <run>/tensorboard`` (notebooks: ``%load_ext tensorboard`` then
``%tensorboard --logdir ...``). Event files are appended per epoch, so a resumed run continues them.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np

from mslesion.outputs import OutputError

__all__ = ["FOLDER", "callbacks", "check_folder", "remove_folder", "pick_slices", "remove_if_only_events"]

FOLDER = "tensorboard"
_SUBFOLDERS = ("train", "validation", "images")
_EVENTS = re.compile(r"events\.out\.tfevents\..+")
N_IMAGES = 3


def pick_slices(images: np.ndarray, masks: np.ndarray, n: int = N_IMAGES) -> np.ndarray:
    """Rows of the ``n`` slices with the most lesion (the first rows where none has any)."""
    area = masks.reshape(len(masks), -1).sum(1)
    return np.argsort(-area, kind="stable")[:n]


def callbacks(run: Path, val_set) -> list:
    """Keras' TensorBoard callback and the validation-image writer for ``run`` (``val_set``: a SliceSet)."""
    import keras

    log_dir = run / FOLDER
    # among at most 64 lesion slices (memory stays small on memory-mapped sets), those with the most lesion
    candidates = np.flatnonzero(val_set.has_lesion)[:64]
    if not len(candidates):
        candidates = np.arange(min(len(val_set), N_IMAGES))
    images, masks = val_set.gather(candidates)
    rows = pick_slices(images, masks)
    x, y = np.asarray(images[rows], np.float32), np.asarray(masks[rows], np.float32)

    class _Images(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            import tensorflow as tf

            self.writer = tf.summary.create_file_writer(str(log_dir / "images"))

        def on_epoch_end(self, epoch, logs=None):
            import tensorflow as tf

            if not len(x):
                return
            pred = np.asarray(self.model.predict(x, verbose=0), np.float32)[..., :1]
            image = x[..., x.shape[-1] // 2 : x.shape[-1] // 2 + 1]  # the centre slice of a 2.5D stack
            lo = image.min(axis=(1, 2, 3), keepdims=True)
            span = np.maximum(image.max(axis=(1, 2, 3), keepdims=True) - lo, 1e-6)
            strip = np.concatenate([(image - lo) / span, y[..., :1], pred], axis=2)
            with self.writer.as_default():
                tf.summary.image("validation: image | truth | prediction", strip, step=epoch, max_outputs=N_IMAGES)
            self.writer.flush()

        def on_train_end(self, logs=None):
            self.writer.close()

    return [keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False), _Images()]


def _owned(folder: Path) -> list[str]:
    """Names under ``folder`` that the logs did not write."""
    foreign = []
    for p in folder.iterdir():
        if p.name not in _SUBFOLDERS or not p.is_dir() or p.is_symlink():
            foreign.append(p.name)
            continue
        foreign += [f"{p.name}/{q.name}" for q in p.iterdir() if not (_EVENTS.fullmatch(q.name) and q.is_file())]
    return sorted(foreign)


def check_folder(run: Path) -> None:
    """Refuse a ``tensorboard`` entry in ``run`` that holds anything TensorBoard logging did not write."""
    folder = run / FOLDER
    if not folder.exists() and not folder.is_symlink():
        return
    if not folder.is_dir() or folder.is_symlink():
        raise OutputError(f"{folder}: not a folder mslesion wrote; move it out first")
    foreign = _owned(folder)
    if foreign:
        raise OutputError(f"{folder}: holds files mslesion did not write ({', '.join(foreign[:5])}); move them out first")


def remove_folder(run: Path) -> None:
    """Remove the run's logs (``overwrite``); :func:`check_folder` has refused anything foreign."""
    folder = run / FOLDER
    if folder.is_dir() and not folder.is_symlink() and not _owned(folder):
        shutil.rmtree(folder)


def remove_if_only_events(folder: Path) -> bool:
    """Remove ``folder`` when everything under it is TensorBoard event files in plain folders; else leave it.

    A learning-rate search's logs (``<trial>/execution<k>/{train,validation}/events...``) started afresh.
    """
    if not folder.is_dir() or folder.is_symlink():
        return False
    for p in folder.rglob("*"):
        if p.is_symlink() or (p.is_file() and not _EVENTS.fullmatch(p.name)):
            return False
    shutil.rmtree(folder)
    return True
