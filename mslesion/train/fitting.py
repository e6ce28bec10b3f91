"""What every fit shares (2D runs, 3D runs, the learning-rate search): the model compiled for training and the
learning-rate and stopping callbacks its config asks for."""

from __future__ import annotations

__all__ = ["float32_output", "compile_for_training", "plateau_callbacks"]


def float32_output(model):
    """``model`` with its output cast to float32, so the sigmoid (and the loss) stay float32 under mixed precision."""
    import keras

    out = keras.layers.Activation("linear", dtype="float32", name="output_float32")(model.output)
    return keras.Model(model.inputs, out, name=model.name)


def compile_for_training(model, config, learning_rate: float | None = None, jit_compile: bool | None = None,
                         steps_per_epoch: int | None = None) -> None:  # fmt: skip
    """The config's optimizer and schedule (:func:`mslesion.train.optimizers.make_optimizer`) at ``learning_rate``
    (default the config's), its loss, accuracy + Dice + IoU at its threshold.

    ``jit_compile=None`` leaves Keras' own default ("auto"); ``steps_per_epoch``: training batches per
    epoch, which a learning-rate schedule needs.
    """
    from mslesion.train import keras_metrics, losses
    from mslesion.train.optimizers import make_optimizer

    model.compile(optimizer=make_optimizer(config, learning_rate, steps_per_epoch),
                  loss=losses.get_loss(config.loss, **config.loss_params),
                  metrics=keras_metrics.default_metrics(getattr(config, "threshold", 0.5)),
                  **({} if jit_compile is None else {"jit_compile": jit_compile}))  # fmt: skip


def plateau_callbacks(config) -> list:
    """ReduceLROnPlateau on the validation loss and EarlyStopping on the validation Dice, when the config sets them."""
    import keras

    callbacks = []
    if getattr(config, "reduce_lr_patience", None):
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=config.reduce_lr_factor,
                                                           patience=config.reduce_lr_patience))  # fmt: skip
    if getattr(config, "early_stopping_patience", None):
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_dice", mode="max",
                                                       patience=config.early_stopping_patience))  # fmt: skip
    return callbacks
