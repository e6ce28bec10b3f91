"""A small prepared synthetic dataset in one call: the demo, the notebooks' ``DATASET = "synthetic"`` and the tests."""

from __future__ import annotations

from pathlib import Path

__all__ = ["quick_synthetic_dataset"]


def quick_synthetic_dataset(out: str | Path, patients: int = 8, *, size: int = 64,
                            shape: tuple[int, int, int] = (128, 128, 16),
                            spacing_mm: tuple[float, float, float] = (1.8, 1.8, 5.0), selection: str = "brain",
                            test_fraction: float = 0.2, val_fraction: float = 0.25, seed: int = 0,
                            raw: str | Path | None = None, overwrite: bool = False):  # fmt: skip
    """Write a synthetic cohort (:func:`mslesion.data.synthetic.generate_cohort`) and prepare it as slices.

    Args:
        out: the prepared dataset folder (``size`` x ``size`` slices, split train/val/test by patient).
        raw: where the NIfTI cohort goes (default ``<out>.raw`` beside ``out``).
        overwrite: replace a cohort and dataset mslesion wrote there before (never anything else).

    Returns:
        the :class:`mslesion.data.prep.PrepSummary` of the preparation (its ``out_dir`` is ``out``).
    """
    from mslesion.data.prep import PrepConfig, prepare_dataset
    from mslesion.data.synthetic import generate_cohort

    out = Path(out)
    raw = Path(raw) if raw is not None else out.with_name(out.name + ".raw")
    generate_cohort(raw, patients, seed=seed, shape=shape, spacing_mm=spacing_mm, overwrite=overwrite)
    config = PrepConfig(size=(size, size), selection=selection, split="train_val_test", test_fraction=test_fraction,
                        val_fraction=val_fraction, seed=seed)  # fmt: skip
    return prepare_dataset(raw, out, config, progress=False, overwrite=overwrite)
