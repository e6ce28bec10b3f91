"""The backbone report's conclusion as a table: ImageNet encoders frozen, retrained, fine-tuned, and from scratch.

The backbone report (chapter 7) concludes that "fine-tuned models outperformed their ImageNet-initialized
counterparts", but its Table 6.1 models kept the ImageNet VGG16 encoder frozen. :func:`fine_tune_report_models`
trains each of its three pretrained models (:data:`mslesion.study.table_6_1.REPORT_MODELS`) in four ways on one
split, so the claim becomes a table this toolkit regenerates (:func:`mslesion.report.eval_tables.fine_tuning_table`):

- ``frozen``: the ImageNet encoder frozen for every epoch (Table 6.1 as the report trained it);
- ``trainable``: ImageNet initialisation, every layer trained from the first epoch;
- ``finetuned``: ``warmup_epochs`` with the encoder frozen (the decoder learns first), then every layer trained
  at ``fine_tune_learning_rate`` for the remaining epochs: a warm-up run, and a second run that starts from its
  weights (``init_from``), so both phases are ordinary, resumable runs;
- ``scratch``: the same architecture with a random encoder, every layer trained.

Every way sees the same number of epochs. ImageNet weights are downloaded by Keras on first use (Kaggle/Colab);
offline the runs fail with the clear error of :mod:`mslesion.models.weights`, and ``weights=None`` turns every
way but ``scratch`` into random encoders (only the mechanics are then compared: the tests' quick setting).
The epoch study reaches 25..200 epochs from one long run: ``epochs=200`` and
:func:`mslesion.train.training.epoch_study` (every 25) on any of these runs.
"""

from __future__ import annotations

from pathlib import Path

from mslesion.study.experiments import job_progress, report_model_config
from mslesion.study.table_6_1 import REPORT_MODELS

__all__ = ["FINE_TUNING_MODES", "PRETRAINED_MODELS", "fine_tuning_config", "fine_tune_report_models"]

FINE_TUNING_MODES = ("frozen", "trainable", "finetuned", "scratch")
PRETRAINED_MODELS = tuple(k for k, m in REPORT_MODELS.items() if m.pretrained)


def fine_tuning_config(key: str, mode: str, dataset: str | Path, runs_root: str | Path, epochs: int,
                       weights: str | None = "imagenet", quick: bool = False, **overrides) -> dict:  # fmt: skip
    """The training config of one pretrained Table 6.1 model trained the ``mode`` way (tag ``<key>-<mode>``).

    For ``finetuned`` this is the second phase; :func:`fine_tune_report_models` adds its warm-up run and
    ``init_from``.

    Raises:
        KeyError: not a pretrained Table 6.1 model, or an unknown mode.
    """
    if key not in PRETRAINED_MODELS:
        raise KeyError(f"{key!r} is not a pretrained Table 6.1 model; those are: {', '.join(PRETRAINED_MODELS)}")
    if mode not in FINE_TUNING_MODES:
        raise KeyError(f"unknown fine-tuning mode {mode!r}; known: {', '.join(FINE_TUNING_MODES)}")
    cfg = report_model_config(key, dataset, runs_root, epochs, quick, None if mode == "scratch" else weights,
                              **overrides)  # fmt: skip
    cfg["model_params"]["encoder"] = "frozen" if mode == "frozen" else "trainable"
    cfg["tag"] = f"{key}-{mode}"
    return cfg


def fine_tune_report_models(dataset: str | Path, runs_root: str | Path, keys: list[str] | None = None,
                            modes: tuple[str, ...] = FINE_TUNING_MODES, epochs: int = 50, warmup_epochs: int = 5,
                            fine_tune_learning_rate: float = 1e-4, weights: str | None = "imagenet",
                            quick: bool = False, verbose: int = 0, overwrite: bool = False, progress: bool = False,
                            time_budget_minutes: float | None = None, **overrides) -> list[Path]:  # fmt: skip
    """Train each pretrained Table 6.1 model (default all three) each ``modes`` way on one split (module doc).

    ``overrides`` go to every run (loss, learning_rate, batch_size, seed...); the fine-tuning phase runs at
    ``fine_tune_learning_rate`` instead. ``time_budget_minutes`` is shared evenly over the runs (a warm-up and
    its fine-tuning count as two). Finished runs are reused unless ``overwrite``. Returns one run folder per
    model and way (for ``finetuned``, its fine-tuning run; the warm-up run lies beside it, tagged
    ``<key>-warmup``).

    Raises:
        KeyError: an unknown model or mode, before any run starts.
        ValueError: ``warmup_epochs`` not between 1 and ``epochs - 1`` when ``finetuned`` is asked for.
    """
    from mslesion.train.training import train

    keys = list(keys or PRETRAINED_MODELS)
    for key in keys:
        for mode in modes:
            fine_tuning_config(key, mode, dataset, runs_root, epochs)
    if "finetuned" in modes and not 0 < warmup_epochs < epochs:
        raise ValueError(f"warmup_epochs must be between 1 and epochs - 1 ({epochs - 1}), not {warmup_epochs}")
    n_runs = len(keys) * (len(modes) + ("finetuned" in modes))
    job = job_progress(n_runs, epochs, progress, time_budget_minutes, overrides)
    runs = []
    for key in keys:
        for mode in modes:
            def run(cfg: dict) -> Path:
                return train(cfg, verbose=verbose, overwrite=overwrite, progress=job)

            if mode != "finetuned":
                runs.append(run(fine_tuning_config(key, mode, dataset, runs_root, epochs, weights, quick, **overrides)))
                continue
            warmup = fine_tuning_config(key, "frozen", dataset, runs_root, warmup_epochs, weights, quick, **overrides)
            warmed = run({**warmup, "tag": f"{key}-warmup"})
            tuned = fine_tuning_config(key, mode, dataset, runs_root, epochs - warmup_epochs, weights, quick,
                                       **{**overrides, "learning_rate": fine_tune_learning_rate})  # fmt: skip
            runs.append(run({**tuned, "init_from": str(warmed)}))
    return runs
