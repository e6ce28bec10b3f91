"""How to evaluate a run (:class:`EvalConfig`), shared by the 2D and 3D evaluations; saved in ``summary.json``."""

from __future__ import annotations

from dataclasses import dataclass

from mslesion.configs import config_from_dict

__all__ = ["EvalConfig"]


@dataclass
class EvalConfig:
    """How to evaluate a run; saved in ``summary.json``."""

    part: str = "test"
    source: str | None = None  # a folder of patients with masks instead of the run's own split
    layout: str = "auto"  # layout of ``source``
    patients: list[str] | None = None  # a subset of the part / source
    checkpoint: str = "model"
    threshold: float = 0.5
    connectivity: int = 26
    detection_fraction: float = 0.0
    batch_size: int = 16
    write_masks: bool = False
    examples_per_tertile: int = 1
    out_dir: str | None = None
    overwrite: bool = False  # replace an evaluation written before at the output folder
    tta: str = "none"  # test-time augmentation (mslesion.infer.tta): none, flip, flip+rot90
    ensemble: list[str] | None = None  # more runs whose probabilities are averaged with the run's (needs out_dir)

    @classmethod
    def from_dict(cls, d: dict) -> EvalConfig:
        return config_from_dict(cls, d, "evaluation")
