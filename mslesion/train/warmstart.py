"""Warm start (``init_from``): a new run begins from the weights of another run's checkpoint.

Røvang (2021) started its U-Net from weights trained on the LGG data of Buda et al. (2019) and fine-tuned
every layer on its own data (sections 8.1 and 8.12), and continued its best run from that run's weights
with augmentation added (section 8.6). Here the source is a run folder (its ``model.keras``, else
``best.keras``) or a ``.keras`` file, and the new model must be the same registry model with weights of the
same shapes (the input size may differ: convolutions do not depend on it). Batch-norm statistics come
along with the weights. The weights are loaded only when the fit starts from epoch 1: a resumed run goes
on from its own backup.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np

from mslesion.errors import ConfigError
from mslesion.folders import RunFolder

__all__ = ["init_checkpoint", "init_weights", "start_from"]


def init_checkpoint(init_from: str | Path) -> tuple[Path, Path | None]:
    """The checkpoint ``init_from`` names and the run folder it belongs to (None for a loose ``.keras`` file).

    Raises:
        RunNotFoundError: no such run folder, or a run without ``model.keras`` / ``best.keras``.
    """
    path = Path(init_from)
    if path.suffix == ".keras" and path.is_file():
        return path, path.parent if (path.parent / "config.json").is_file() else None
    run = RunFolder.open(path)
    return run.require_checkpoint("model"), run.path


def init_weights(config, model, run: Path) -> tuple[Path, list[np.ndarray]]:
    """The checkpoint of ``config.init_from`` and its weights, checked against ``model`` (the run's in ``run``).

    Raises:
        ConfigError: another registry model, or a different number or shape of weights (naming both runs and
            the first weight that differs).
        RunNotFoundError: ``init_from`` is not a run with a checkpoint, nor a ``.keras`` file.
    """
    from mslesion.models import load_model

    checkpoint, source = init_checkpoint(config.init_from)
    prefix = f"{run}: cannot start from {checkpoint}"
    if source is not None:
        theirs = RunFolder(source).config.get("model")
        if theirs is not None and theirs != config.model:
            raise ConfigError(f"{prefix}: it is a {theirs} run, this one is {config.model}")
    donor = load_model(checkpoint, compile=False)
    mine, given = model.weights, donor.weights
    for i, (a, b) in enumerate(zip(mine, given)):
        if tuple(a.shape) != tuple(b.shape):
            raise ConfigError(f"{prefix}: weight {i} {a.path} is {tuple(a.shape)} here but {b.path} is "
                              f"{tuple(b.shape)} there (other model_params or input channels?)")  # fmt: skip
    if len(mine) != len(given):
        raise ConfigError(f"{prefix}: {len(given)} weights there, {len(mine)} here (other model_params?)")
    return checkpoint, [np.asarray(w) for w in donor.get_weights()]


def start_from(run: Path, model, checkpoint: Path, weights: list[np.ndarray], strategy=None) -> None:
    """Give ``model`` the warm start's ``weights`` (from :func:`init_weights`) and say so in the run's log."""
    with strategy.scope() if strategy is not None else nullcontext():
        model.set_weights(weights)
    print(f"{run}: starting from the weights of {checkpoint}")
