"""A trained run + new patients' images -> lesion mask files and a summary CSV (``mslesion predict``).

What a collaborator without the notebooks uses. Inputs may be one NIfTI FLAIR
file, a folder of NIfTI files (one patient each, single-modality runs), any
dataset folder :func:`mslesion.data.cohort.discover_cases` reads (masks not needed),
or a folder matched by ``{patient}`` patterns. Output folder (a new folder,
never inside or around the inputs or the run; replaced only with
``overwrite``, see :func:`mslesion.outputs.output_dir`)::

    <patient>_lesion_mask.nii.gz   uint8 {0,1}, the source image's affine and header
    <patient>/*_pred_mask.tif      for TIFF-slice datasets (LGG), one per slice
    lesions.csv                    per patient: lesion volume (mL), voxels, lesion count, largest lesion
    predict_config.json            run, checkpoint, threshold, connectivity, inputs, warnings per patient
    <patient>_uncertainty_<m>.nii.gz  with --uncertainty std|entropy: float32 map, the source's grid and header
                                   (TIFF datasets: <patient>_uncertainty_<m>.npy on the canonical stack)
    uncertainty.csv                with --uncertainty: one row per predicted lesion, its mean and max uncertainty
    failures.csv                   patients that could not be read, and why

Outputs are never read back as inputs: ``*_lesion_mask.nii*`` files and
folders carrying an mslesion marker (other than a synthetic cohort's) are
skipped. When no patient can be predicted nothing is written.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from mslesion.data.case import Case
from mslesion.data.loading import SourceConfig, load_case
from mslesion.data.prep import PrepConfig
from mslesion.errors import FAILURE_COLUMNS, ConfigError, MslesionError, failure_row
from mslesion.evaluate.lesions import label_lesions
from mslesion.fileio import save_csv, save_json, save_npy
from mslesion.infer.inference import check_run, open_runs, predict_volume, write_mask
from mslesion.infer.inputs import find_inputs
from mslesion.infer.postprocess import PostProcess, resolve_postprocess
from mslesion.infer.tta import transforms
from mslesion.infer.uncertainty import UNCERTAINTY, lesion_uncertainty, write_float_like
from mslesion.outputs import check_inside, check_output, output_dir

__all__ = ["KIND", "PredictResult", "predict"]


#: The output kind of a predictions folder (its :data:`mslesion.outputs.MARKER`).
KIND = "predictions"


_COLUMNS = ["patient", "image", "lesion_voxels", "lesion_volume_ml", "lesions", "largest_lesion_voxels",
            "largest_lesion_ml", "mask"]  # fmt: skip


@dataclass
class PredictResult(os.PathLike):
    """What :func:`predict` did.

    ``os.fspath(result)`` (and ``str``) is ``out_dir/lesions.csv``, the path
    :func:`predict` returned before, so ``pd.read_csv(predict(...))`` still works.

    Attributes:
        out_dir: the output folder (not written when nothing was predicted).
        predicted: ids of the patients predicted, in input order.
        failures: ``{"patient", "error", "message"}`` per patient that failed.
        warnings: patient -> what was accepted but worth knowing (oblique affine).
    """

    out_dir: Path
    predicted: list[str] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    warnings: dict[str, list[str]] = field(default_factory=dict)

    @property
    def lesions_csv(self) -> Path:
        return self.out_dir / "lesions.csv"

    def __fspath__(self) -> str:
        return str(self.lesions_csv)

    def __str__(self) -> str:
        return str(self.lesions_csv)

    def summary(self) -> str:
        """``"predicted 3 patients, 1 failed"``."""
        n = len(self.predicted)
        return f"predicted {n} patient{'' if n == 1 else 's'}, {len(self.failures)} failed"


class _NothingPredicted(Exception):
    """Every patient failed: leave the output folder as it was."""


def predict(
    run_dir: str | Path,
    inputs: str | Path,
    out_dir: str | Path,
    checkpoint: str = "model",
    threshold: float | None = None,
    connectivity: int = 26,
    image_patterns: dict[str, str] | None = None,
    layout: str = "auto",
    batch_size: int = 16,
    verbose: bool = True,
    overwrite: bool = False,
    tta: str = "none",
    postprocess: bool = True,
    uncertainty: str = "none",
    brain_mask_pattern: str | None = None,
) -> PredictResult:
    """Segment every patient under ``inputs`` with a trained run into the new folder ``out_dir``.

    The run, the inputs and ``out_dir`` are checked before the model is loaded
    or anything is written. A patient that cannot be read is a failure row and
    the others are still predicted; when none can be, nothing is written.

    Args:
        run_dir: a run folder, or several: one ensemble (their probabilities averaged).
        overwrite: replace a predictions folder mslesion wrote at ``out_dir`` before.
        tta: test-time augmentation (:data:`mslesion.infer.tta.TTA_MODES`).
        threshold: the probability cut; default: the run's ``postprocess.json``, else 0.5.
        postprocess: apply the run's ``postprocess.json`` (threshold, small-component removal, hole filling chosen
            on its validation patients) where it has one; never for an ensemble, for which it was not chosen.
        uncertainty: ``std`` (over the ensemble members and TTA passes) or ``entropy`` (of the mean probability):
            write a voxel-wise map per patient and per-lesion means (:mod:`mslesion.infer.uncertainty`).
        brain_mask_pattern: the new patients' brain mask files, relative to ``inputs`` (``{patient}``
            placeholder), for a run prepared with ``skull_strip='mask'``; required there, refused elsewhere.
            Registration and the other skull stripping methods are applied from the run's record as in prep.

    Returns:
        A :class:`PredictResult`; ``os.fspath`` of it is ``out_dir/lesions.csv``.

    Raises:
        RunNotFoundError, DamagedCheckpointError: the run cannot be used.
        ConfigError: a ``skull_strip='mask'`` run without ``brain_mask_pattern`` (or a pattern for another run).
        NoCasesFoundError, MissingModalityError: nothing to predict at ``inputs``.
        OutputError: ``out_dir`` overlaps the inputs or the run, or holds something else.
    """
    run_dirs = [Path(run_dir)] if isinstance(run_dir, (str, os.PathLike)) else [Path(r) for r in run_dir]
    run_dir, inputs, out_dir = run_dirs[0], Path(inputs), Path(out_dir)
    # cheap checks first: a bad input or output must not cost a model load, and nothing is written yet
    transforms(tta)
    if uncertainty not in UNCERTAINTY:
        raise ValueError(f"uncertainty must be one of {UNCERTAINTY}, not {uncertainty!r}")
    if uncertainty == "std" and tta == "none" and len(run_dirs) == 1:
        raise ValueError("uncertainty 'std' needs several passes: give --tta or several runs (an ensemble), "
                         "or use 'entropy'")  # fmt: skip
    _, record, _ = check_run(run_dir, checkpoint)
    source = _source_for_new_patients(PrepConfig.from_dict(record), brain_mask_pattern, run_dir)
    modalities = tuple(source.modalities)
    found = find_inputs(inputs, modalities, image_patterns, layout)
    check_output(out_dir, KIND, overwrite=overwrite, inputs=[inputs, *run_dirs])
    members = open_runs(run_dirs, checkpoint)
    run = members[0]
    post = resolve_postprocess(run_dir, threshold, postprocess, ensemble=len(run_dirs) > 1)
    result = PredictResult(out_dir, failures=list(found.rejected))
    if verbose:
        for row in found.rejected:
            print(f"  FAILED {row['patient']}: {row['message']}")
    try:
        with output_dir(out_dir, KIND, overwrite=overwrite, inputs=[inputs, *run_dirs]) as tmp:
            rows, lesion_rows = [], []
            for case in found.cases:
                row = _predict_case(members, case, tmp, out_dir, post, connectivity, batch_size, result,
                                    verbose, tta, uncertainty, lesion_rows, source)  # fmt: skip
                if row is not None:
                    rows.append(row)
            if not rows:
                raise _NothingPredicted
            _write_tables(tmp, rows, result, run, run_dir, inputs, checkpoint, post.threshold, connectivity,
                          {"members": [str(r.resolve()) for r in run_dirs], "tta": tta, "uncertainty": uncertainty,
                           "register": source.register, "skull_strip": source.skull_strip,
                           "brain_mask_pattern": brain_mask_pattern,
                           "postprocess": {**asdict(post), "applied": post.describe()}})  # fmt: skip
            if uncertainty != "none":
                save_csv(tmp / "uncertainty.csv", lesion_rows, columns=["patient", "lesion", "voxels", "volume_ml",
                                                                       f"mean_{uncertainty}", f"max_{uncertainty}"])
    except _NothingPredicted:
        pass  # every patient failed: out_dir is left as it was, the result says why
    return result


def _source_for_new_patients(prep: PrepConfig, brain_mask_pattern: str | None, run_dir: Path) -> SourceConfig:
    """How new patients are loaded: the run's source options, with their own brain masks for a ``mask`` run."""
    source = prep.source()
    if source.skull_strip == "mask":
        if not brain_mask_pattern:
            raise ConfigError(f"{run_dir}: the run was prepared with skull_strip='mask' (a brain mask file per "
                              "patient), so new patients need theirs: give --brain-mask-pattern, relative to the "
                              "inputs, e.g. --brain-mask-pattern '{patient}/brainmask.nii.gz'")  # fmt: skip
        return replace(source, brain_mask_pattern=brain_mask_pattern)
    if brain_mask_pattern:
        raise ConfigError(f"--brain-mask-pattern: {run_dir} was prepared with skull_strip={source.skull_strip!r}, "
                          "which reads no brain mask files; leave it out")  # fmt: skip
    return source


def _predict_case(members: list, case: Case, tmp: Path, out_dir: Path, post: PostProcess, connectivity: int,
                  batch_size: int, result: PredictResult, verbose: bool, tta: str, uncertainty: str = "none",
                  lesion_rows: list | None = None, source: SourceConfig | None = None) -> dict | None:  # fmt: skip
    """Predict one patient into ``tmp``; its lesions.csv row, or None after recording a failure."""
    run = members[0]
    try:
        loaded = load_case(case, with_mask=False, source=source or run.prep.source())
        name = f"{loaded.patient_id}_lesion_mask.nii.gz" if loaded.affine is not None else loaded.patient_id
        target = check_inside(tmp, tmp / name)
    except MslesionError as exc:
        result.failures.append(failure_row(case.patient_id, exc))
        if verbose:
            print(f"  FAILED {case.patient_id}: {exc}")
        return None
    predicted = predict_volume(members, loaded, batch_size, tta, uncertainty)
    prob, unc = predicted if uncertainty != "none" else (predicted, None)
    mask = post.apply(prob, loaded.spacing_zhw_mm)
    written = write_mask(mask, loaded, target)
    labels, n = label_lesions(mask, connectivity)
    sizes = np.bincount(labels.ravel())[1:] if n else np.zeros(0, np.int64)
    voxel_ml = float(np.prod(loaded.spacing_zhw_mm)) / 1000 if loaded.spacing_zhw_mm else float("nan")
    # paths as they will be once the folder is swapped in, not the temporary ones
    final = out_dir / Path(os.path.relpath(written[0] if len(written) == 1 else target, tmp))
    result.predicted.append(loaded.patient_id)
    if loaded.warnings:
        result.warnings[loaded.patient_id] = list(loaded.warnings)
    row = {
        "patient": loaded.patient_id, "image": str(loaded.image_files[0]),
        "lesion_voxels": int(mask.sum()), "lesion_volume_ml": float(mask.sum()) * voxel_ml,
        "lesions": int(n), "largest_lesion_voxels": int(sizes.max()) if n else 0,
        "largest_lesion_ml": float(sizes.max()) * voxel_ml if n else 0.0, "mask": str(final),
    }  # fmt: skip
    if unc is not None:
        row.update(_write_uncertainty(unc, loaded, labels, sizes, tmp, out_dir, uncertainty, voxel_ml, lesion_rows))
    if verbose:
        print(f"  {loaded.patient_id}: {n} lesions, {row['lesion_volume_ml']:.2f} mL -> {row['mask']}")
    return row


def _write_uncertainty(unc: np.ndarray, loaded, labels: np.ndarray, sizes: np.ndarray, tmp: Path, out_dir: Path,
                       measure: str, voxel_ml: float, lesion_rows: list) -> dict:  # fmt: skip
    """The patient's uncertainty map, its per-lesion rows, and the columns it adds to lesions.csv."""
    pid = loaded.patient_id
    if loaded.affine is not None:
        name = f"{pid}_uncertainty_{measure}.nii.gz"
        write_float_like(unc, loaded.affine, loaded.image_files[0], check_inside(tmp, tmp / name),
                         f"mslesion uncertainty ({measure})")  # fmt: skip
    else:  # TIFF slices have no grid to write a float map on that other tools read
        name = f"{pid}_uncertainty_{measure}.npy"
        save_npy(check_inside(tmp, tmp / name), unc.astype(np.float32))
    n = len(sizes)  # the lesions' voxel counts, label k at index k-1
    means = lesion_uncertainty(labels, n, unc)
    maxima = ndimage.maximum(unc, labels, index=np.arange(1, n + 1)) if n else []
    for k in range(n):
        lesion_rows.append({"patient": pid, "lesion": k + 1, "voxels": int(sizes[k]),
                            "volume_ml": float(sizes[k]) * voxel_ml, f"mean_{measure}": float(means[k]),
                            f"max_{measure}": float(maxima[k])})  # fmt: skip
    inside = labels > 0
    return {"uncertainty_map": str(out_dir / name),
            "mean_lesion_uncertainty": float(unc[inside].mean()) if inside.any() else float("nan")}


def _write_tables(tmp: Path, rows: list[dict], result: PredictResult, run, run_dir: Path, inputs: Path,
                  checkpoint: str, threshold: float, connectivity: int, extra: dict) -> None:  # fmt: skip
    import pandas as pd

    more = ["mean_lesion_uncertainty", "uncertainty_map"] if "uncertainty_map" in rows[0] else []
    table = pd.DataFrame(rows, columns=_COLUMNS + more)
    save_csv(tmp / "lesions.csv", table)
    save_csv(tmp / "failures.csv", result.failures, columns=FAILURE_COLUMNS)
    save_json(tmp / "predict_config.json", {
        "run": str(run_dir.resolve()), "checkpoint": checkpoint, "threshold": threshold,
        "connectivity": connectivity, "inputs": str(inputs.resolve()), "patients": result.predicted,
        "modalities": list(run.prep.modalities), "warnings": result.warnings, **extra,
    })  # fmt: skip
