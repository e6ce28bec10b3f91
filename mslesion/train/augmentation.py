"""Paired geometric augmentation of slices and masks, on the host (``tf.data``) or on the device.

The same Keras preprocessing layers serve both places; only where they run differs:

- **host**: a parallel ``tf.data`` map (:func:`mslesion.train.datasets.make_dataset`), on the CPU cores;
- **device**: inside the model's train step (:func:`augment_in_train_step`), on the GPU, so a
  host with 2-4 cores never caps the accelerator (Keras' own advice for on-device preprocessing).

Keras' rotation, translation and zoom layers warp with ``ImageProjectiveTransformV3``, which XLA
cannot compile: on a TPU, or with ``jit_compile``, augmentation stays on the host
(:func:`mslesion.train.runtime.augment_place`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Augmentation", "apply_paired", "augment_in_train_step"]


@dataclass
class Augmentation:
    """Random geometric augmentation applied identically to image and mask (Røvang 2021; the LGG encoder comparison).

    Attributes:
        flip: horizontal flips (left-right).
        rotation_deg: maximum rotation either way.
        shift: maximum translation as a fraction of the size.
        zoom: maximum zoom in/out as a fraction.
    """

    flip: bool = True
    rotation_deg: float = 10.0
    shift: float = 0.05
    zoom: float = 0.1

    def layers(self, seed: int) -> list:
        """The seeded Keras layers, in the order they are applied (float32 under any dtype policy)."""
        import keras

        out = []
        if self.flip:
            out.append(keras.layers.RandomFlip("horizontal", seed=seed, dtype="float32"))
        if self.rotation_deg:
            out.append(keras.layers.RandomRotation(self.rotation_deg / 360.0, fill_mode="constant", seed=seed + 1,
                                                   dtype="float32"))  # fmt: skip
        if self.shift:
            out.append(keras.layers.RandomTranslation(self.shift, self.shift, fill_mode="constant", seed=seed + 2,
                                                      dtype="float32"))  # fmt: skip
        if self.zoom:
            out.append(keras.layers.RandomZoom(self.zoom, fill_mode="constant", seed=seed + 3, dtype="float32"))
        return out


def apply_paired(layers: list, x, y):
    """``(x, y)`` batches transformed together: the mask rides as extra channels, then is re-binarised."""
    import tensorflow as tf

    c = x.shape[-1]
    both = tf.concat([tf.cast(x, tf.float32), tf.cast(y, tf.float32)], axis=-1)
    for layer in layers:
        both = layer(both, training=True)
    return both[..., :c], tf.cast(both[..., c:] > 0.5, tf.float32)


def augment_in_train_step(model, augment: Augmentation, seed: int) -> list:
    """Augment each batch inside ``model``'s train step (TensorFlow backend); returns the layers.

    Call it inside the strategy scope the model was built in (the layers' seed states are
    variables) and before ``fit``. Only this model object's ``train_step`` changes: the layers
    are not part of the model, so what is saved (``.keras``) is the plain model, and
    evaluation and prediction never augment.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        # the 2D runner trains on TensorFlow only (its datasets are tf.data); other backends only run the models
        raise ValueError(f"augmentation in the train step needs the TensorFlow backend, not "
                         f"{keras.backend.backend()!r}; mslesion trains with KERAS_BACKEND=tensorflow")
    layers = augment.layers(seed)
    plain_step = type(model).train_step

    def train_step(data):
        x, y, *rest = data
        x, y = apply_paired(layers, x, y)
        return plain_step(model, (x, y, *rest))

    # an instance attribute, not a subclass: saved models stay plain Functional models
    object.__setattr__(model, "train_step", train_step)
    return layers
