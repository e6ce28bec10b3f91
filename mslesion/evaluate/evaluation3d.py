"""Score a 3D patch run (``mslesion train3d``) on whole prepared volumes, by sliding window.

The same per-patient loop and files as the 2D evaluation (:mod:`mslesion.evaluate.loop`:
per_patient.csv, lesions.csv, slices.csv, failures.csv; no examples.npz); ``summary.json``
adds ``sliding_window``.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from mslesion.evaluate.config import EvalConfig
from mslesion.evaluate.loop import Scoring, Subject, score_subjects
from mslesion.evaluate.summary import evaluation_summary
from mslesion.fileio import save_json

__all__ = ["evaluate_3d"]


def evaluate_3d(run_dir: str | Path, config: EvalConfig | dict | None = None, *, blend: str = "gaussian",
                batch_size: int = 2, stride: tuple[int, int, int] | None = None, verbose: bool = True) -> Path:  # fmt: skip
    """Score a 3D run on whole volumes of one split part; returns the output folder.

    Each patient's whole prepared volume is predicted by sliding window (the run's patch, its stride
    unless ``stride`` is given, ``blend`` weighting, ``batch_size`` patches at a time), thresholded and
    scored as in :func:`mslesion.evaluate.evaluation.evaluate`. ``config.write_masks`` writes
    ``masks/<patient>_pred.nii.gz`` with the source image's affine and header (the source files must
    still exist). The folder is written whole; an earlier evaluation is replaced only with ``config.overwrite``.
    """
    from mslesion.data.volumes3d import open_volume
    from mslesion.folders import DatasetFolder, RunFolder
    from mslesion.infer.inference import write_mask_like
    from mslesion.infer.postprocess import resolve_postprocess
    from mslesion.infer.sliding_window import sliding_window_predict
    from mslesion.models import load_model
    from mslesion.outputs import output_dir

    config = EvalConfig.from_dict(config) if isinstance(config, dict) else (config or EvalConfig())
    run_dir = Path(run_dir)
    if config.source:
        raise ValueError(f"{run_dir}: a 3D run evaluates the patients of its prepared volumes; --source is 2D only")
    if config.tta != "none" or config.ensemble or config.uncertainty != "none":
        raise ValueError(f"{run_dir}: test-time augmentation, ensembles and uncertainty are for 2D runs so far, "
                         "not 3D patch runs")  # fmt: skip
    run = RunFolder.open(run_dir)
    path = run.checkpoint(config.checkpoint)
    config = replace(config, checkpoint=path.stem, batch_size=batch_size)
    run_config = run.config
    model = load_model(path, compile=False)
    dataset, fold = run_config["dataset"], run_config.get("fold", 0)
    wanted = config.patients or DatasetFolder(dataset).patients(config.part, fold)
    if not wanted:
        raise ValueError(f"{dataset}: the split has no {config.part!r} patients in fold {fold}")
    patch, stride = tuple(run_config["patch"]), tuple(stride or run_config["stride"])

    def load(pid: str) -> Subject:
        case = open_volume(dataset, pid, mmap=False)
        spacing = case.meta.get("spacing_zhw_mm")
        source = case.meta["source"]
        affine = np.asarray(source["affine"]) if source.get("affine") is not None else None
        files = [Path(p) for p in source["image_files"]]  # the written mask copies the source image's header
        return Subject(pid, case.mask > 0, tuple(spacing) if spacing else None, data=case.volume,
                       write_mask=lambda pred, out: write_mask_like(pred, affine, files, out),
                       mask_name=f"{pid}_pred{'' if affine is None else '.nii.gz'}")  # fmt: skip

    def predict(subject: Subject) -> np.ndarray:
        return sliding_window_predict(model.predict_on_batch, subject.data, patch, stride, batch_size, blend)

    post = resolve_postprocess(run_dir, config.threshold, config.postprocess)
    scoring = Scoring(post.threshold, config.connectivity, config.detection_fraction, config.write_masks, post=post)
    out = Path(config.out_dir) if config.out_dir else run_dir / f"eval_{config.part}"
    with output_dir(out, "evaluation", overwrite=config.overwrite, inputs=[dataset]) as tmp:
        per_patient, slices, failures = score_subjects(
            [(pid, lambda pid=pid: load(pid)) for pid in wanted], predict, tmp, scoring,
            errors=(FileNotFoundError, ValueError), examples=False, verbose=verbose)  # fmt: skip
        origin = {"run": str(run_dir), "checkpoint": config.checkpoint, "model": run_config.get("model")}
        label = f"{config.part} part of {dataset} (fold {fold}), whole prepared volumes"
        summary = evaluation_summary(origin, {**asdict(config), "threshold": post.threshold}, label, per_patient,
                                     slices, failures)  # fmt: skip
        summary["postprocess"] = {**asdict(post), "applied": post.describe()}
        summary["sliding_window"] = {"patch": list(patch), "stride": list(stride), "blend": blend,
                                     "batch_size": batch_size}  # fmt: skip
        save_json(tmp / "summary.json", summary)
    return out
