"""Prepared slices -> ``tf.data`` pipelines, one split part at a time.

Slices stay memory-mapped on disk; each epoch the sampler draws row indices
(shuffled with the run's seed, optionally class-balanced between lesion and
lesion-free slices), and batches are gathered with NumPy fancy indexing, so
the Python cost is per batch, not per slice. Augmentation (flip, rotation,
shift, zoom) runs in TensorFlow on image and mask together, so both get the
same transform; the mask is re-binarised afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mslesion.data.reader import open_case, read_manifest
from mslesion.folders import DatasetFolder
from mslesion.train.augmentation import Augmentation, apply_paired

__all__ = ["SliceSet", "Augmentation", "load_slice_set", "make_dataset", "split_patients_of"]


@dataclass
class SliceSet:
    """The slices of some patients: per-patient memmaps plus a flat row index.

    Attributes:
        images, masks: one ``(N_p, H, W, C)`` / ``(N_p, H, W, 1)`` array per patient.
        index: ``(N, 2)`` int array of (patient number, row).
        has_lesion: ``(N,)`` bool, from the manifest.
        patients: patient ids in the order of ``images``.
    """

    images: list[np.ndarray]
    masks: list[np.ndarray]
    index: np.ndarray
    has_lesion: np.ndarray
    patients: list[str]

    def __len__(self) -> int:
        return len(self.index)

    @property
    def slice_shape(self) -> tuple[int, ...]:
        return tuple(self.images[0].shape[1:])

    def gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Copy the given flat rows into float32 ``(B, H, W, C)`` images and masks."""
        x = np.empty((len(rows), *self.slice_shape), np.float32)
        y = np.empty((len(rows), *self.masks[0].shape[1:]), np.float32)
        pairs = self.index[rows]
        # group by patient so each memmap is read with one fancy index
        for p in np.unique(pairs[:, 0]):
            sel = np.flatnonzero(pairs[:, 0] == p)
            order = pairs[sel, 1]
            x[sel] = self.images[p][order]
            y[sel] = self.masks[p][order]
        return x, y

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Everything in memory, in index order (for small sets and evaluation)."""
        return self.gather(np.arange(len(self)))


def split_patients_of(dataset_dir: str | Path, part: str, fold: int = 0) -> list[str]:
    """Patient ids of ``part`` (train/val/test) in fold ``fold`` of ``splits.json`` (:meth:`DatasetFolder.patients`)."""
    return DatasetFolder(dataset_dir).patients(part, fold)


def load_slice_set(dataset_dir: str | Path, patients: list[str], mmap: bool = True) -> SliceSet:
    """Open the slices of ``patients`` (memory-mapped by default)."""
    manifest = read_manifest(dataset_dir)
    images, masks, index, lesion, kept = [], [], [], [], []
    for pid in patients:
        rows = manifest[manifest.patient == str(pid)]
        if rows.empty:
            continue  # a patient with no selected slice (e.g. no lesion)
        image, mask, _ = open_case(dataset_dir, str(pid), mmap=mmap)
        if len(image) != len(rows):
            raise ValueError(f"{dataset_dir}/{pid}: image.npy has {len(image)} slices, manifest lists {len(rows)}")
        p = len(images)
        images.append(image)
        masks.append(mask)
        index.append(np.stack([np.full(len(rows), p), rows.row.to_numpy()], axis=1))
        lesion.append(rows.lesion_pixels.to_numpy() > 0)
        kept.append(str(pid))
    if not images:
        raise ValueError(f"{dataset_dir}: none of the patients {patients} has slices")
    shapes = {im.shape[1:] for im in images}
    if len(shapes) != 1:
        raise ValueError(f"{dataset_dir}: patients have different slice shapes {sorted(shapes)}")
    return SliceSet(images, masks, np.concatenate(index).astype(np.int64), np.concatenate(lesion), kept)


def _epoch_rows(n: int, has_lesion: np.ndarray, rng: np.random.Generator, shuffle: bool, balance: bool) -> np.ndarray:
    if balance and has_lesion.any() and (~has_lesion).any():
        # equal chance for lesion and lesion-free slices; an epoch keeps its length
        p = np.where(has_lesion, 0.5 / has_lesion.sum(), 0.5 / (~has_lesion).sum())
        return rng.choice(n, size=n, replace=True, p=p)
    return rng.permutation(n) if shuffle else np.arange(n)


def _graph_batches(slices: SliceSet, batch_size: int, epoch_rows, rows_per_batch: int | None):
    """Batches gathered in the TensorFlow graph from the slices held in host memory."""
    import tensorflow as tf

    x, y = slices.arrays()
    with tf.device("/cpu:0"):  # a variable, not a constant: no 2 GB graph limit, one copy in host memory
        images = tf.Variable(x, trainable=False, name="slice_images")
        masks = tf.Variable(y, trainable=False, name="slice_masks")
    del x, y

    def one_epoch():
        yield epoch_rows()

    def gather(rows):
        xb, yb = tf.gather(images, rows), tf.gather(masks, rows)
        if rows_per_batch:
            xb.set_shape((rows_per_batch, *images.shape[1:]))
            yb.set_shape((rows_per_batch, *masks.shape[1:]))
        return xb, yb

    rows = tf.data.Dataset.from_generator(one_epoch, output_signature=tf.TensorSpec((None,), tf.int64))
    indices = rows.flat_map(lambda r: tf.data.Dataset.from_tensor_slices(r).batch(batch_size))
    return indices.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def make_dataset(
    slices: SliceSet,
    batch_size: int = 8,
    *,
    shuffle: bool = True,
    seed: int = 0,
    balance: bool = False,
    augment: Augmentation | None = None,
    drop_remainder: bool = False,
    min_last_batch: int = 1,
    source: str = "generator",
):
    """A ``tf.data.Dataset`` of ``(images, masks)`` float32 batches for one pass (an epoch).

    Iterating it again starts a new epoch with a new, seeded order: the order
    of epoch e is fixed by ``(seed, e)``, so resumed runs see the same data.

    Args:
        slices: from :func:`load_slice_set`.
        balance: sample lesion and lesion-free slices equally often (with replacement).
        augment: paired geometric augmentation, or None.
        drop_remainder: every batch full, with a static batch dimension (TPU).
        min_last_batch: leave out a last batch with fewer rows (a strategy with R replicas
            needs at least R: an empty replica batch fails in batch normalisation).
        source: ``"generator"`` gathers each batch from the memmaps in Python; ``"graph"`` holds
            the slices in host memory (a CPU variable) and gathers batches with ``tf.gather``, so the
            only Python call is one per epoch (its row order) and a TPU host never waits on the GIL.
            Both give the same batches in the same order.
    """
    import tensorflow as tf

    n = len(slices)
    h, w, c = slices.slice_shape
    epoch = {"count": 0}

    def epoch_rows() -> np.ndarray:
        """The rows of the next epoch, in order, without a left-out last batch."""
        rng = np.random.default_rng([seed, epoch["count"]])
        epoch["count"] += 1
        rows = _epoch_rows(n, slices.has_lesion, rng, shuffle, balance)
        stop = n - n % batch_size if drop_remainder or n % batch_size < min_last_batch else n
        return rows[:stop]

    def batches():
        rows = epoch_rows()
        for start in range(0, len(rows), batch_size):
            yield slices.gather(rows[start : start + batch_size])

    rows_per_batch = batch_size if drop_remainder else None  # static: what a TPU (XLA) compiles for
    spec = (tf.TensorSpec((rows_per_batch, h, w, c), tf.float32), tf.TensorSpec((rows_per_batch, h, w, 1), tf.float32))
    n_batches = n // batch_size if drop_remainder or n % batch_size < min_last_batch else -(-n // batch_size)
    if source == "graph":
        ds = _graph_batches(slices, batch_size, epoch_rows, rows_per_batch)
    elif source == "generator":
        ds = tf.data.Dataset.from_generator(batches, output_signature=spec)
    else:
        raise ValueError(f"source must be 'generator' or 'graph', not {source!r}")
    ds = ds.apply(tf.data.experimental.assert_cardinality(n_batches))  # lets Keras know the epoch length
    if augment is not None:
        layers = augment.layers(seed)
        ds = ds.map(lambda x, y: apply_paired(layers, x, y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
