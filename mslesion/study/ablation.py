"""The FC-DenseNet ablation over folds (Rondinella et al. 2023, "Boosting multiple sclerosis lesion segmentation
through attention mechanism", section 4.5, Table 5) as one call.

Four architectures on the same folds of one slice-triplet dataset (``prep --context 3``, brain-cropped as that
work did): the plain FC-DenseNet (Tiramisu), with the ConvLSTM in the bottleneck, with squeeze-and-attention
blocks on both paths, and with both (the proposed model). Each is trained on every fold asked for
(:func:`mslesion.train.folds.train_folds`: resumable, finished folds skipped) and scored out of fold
(:func:`mslesion.evaluate.cross_validation.evaluate_folds`); :func:`mslesion.report.eval_tables.ablation_table`
gives Table 5's form: Dice per fold, and mean ± SD across folds.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mslesion.study.experiments import QUICK_NATIVE

__all__ = ["ABLATION_VARIANTS", "ablate_fc_densenet"]

#: Table 5's rows: name -> (label, model parameters)
ABLATION_VARIANTS: dict[str, tuple[str, dict]] = {
    "fc_densenet": ("FC-DenseNet", {"attention": False, "lstm": False}),
    "fc_densenet_clstm": ("FC-DenseNet + C-LSTM", {"attention": False, "lstm": True}),
    "fc_densenet_sa": ("FC-DenseNet + SA", {"attention": True, "lstm": False}),
    "fc_densenet_sa_clstm": ("FC-DenseNet + SA + C-LSTM", {"attention": True, "lstm": True}),
}


def ablate_fc_densenet(dataset: str | Path, runs_root: str | Path, out_dir: str | Path,
                       variants: Sequence[str] | None = None, folds: str | Sequence[int] = "all", epochs: int = 50,
                       quick: bool = False, verbose: int = 0, overwrite: bool = False,
                       **overrides) -> dict[str, Path]:  # fmt: skip
    """Train and score each variant of :data:`ABLATION_VARIANTS` on ``folds`` of ``dataset``.

    Args:
        dataset: a slice dataset prepared with ``context=3`` (slice triplets) and a k-fold split.
        out_dir: where each variant's cross-validation evaluation goes (``<out_dir>/<variant>``).
        folds: ``"all"`` or fold numbers (that work used folds 2 and 4 of 5).
        quick: the narrow FC-DenseNet of the tests and the demo.
        overrides: training options for every run (loss, batch_size, learning_rate, seed...).

    Returns:
        variant name -> its cross-validation folder (``folds.csv``, ``summary.json``, ``fold_<k>/``).

    Raises:
        KeyError: an unknown variant, before any run starts.
    """
    from mslesion.evaluate.config import EvalConfig
    from mslesion.evaluate.cross_validation import evaluate_folds
    from mslesion.train.config import TrainConfig
    from mslesion.train.folds import train_folds

    names = list(variants or ABLATION_VARIANTS)
    unknown = [n for n in names if n not in ABLATION_VARIANTS]
    if unknown:
        raise KeyError(f"unknown ablation variants {unknown}; known: {', '.join(ABLATION_VARIANTS)}")
    widths = dict(QUICK_NATIVE["native.fc_densenet"]) if quick else {}
    out = {}
    for name in names:
        config = TrainConfig.from_dict({"dataset": str(dataset), "model": "native.fc_densenet",
                                        "model_params": {**widths, **ABLATION_VARIANTS[name][1]}, "epochs": epochs,
                                        "runs_root": str(runs_root), "tag": name, **overrides})  # fmt: skip
        runs = train_folds(config, folds, verbose=verbose, overwrite=overwrite)
        out[name] = evaluate_folds(runs, EvalConfig(out_dir=str(Path(out_dir) / name), overwrite=True),
                                   verbose=bool(verbose))  # fmt: skip
    return out
