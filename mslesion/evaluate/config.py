"""How to evaluate a run (:class:`EvalConfig`), shared by the 2D and 3D evaluations; saved in ``summary.json``."""

from __future__ import annotations

from dataclasses import dataclass, field

from mslesion.configs import config_from_dict
from mslesion.data.cohort import LAYOUTS
from mslesion.infer.inference import CHECKPOINTS
from mslesion.infer.tta import TTA_MODES
from mslesion.infer.uncertainty import UNCERTAINTY

__all__ = ["EvalConfig"]


@dataclass
class EvalConfig:
    """How to evaluate a run; saved in ``summary.json``."""

    part: str = field(default="test", metadata={"help": "split part of the run's dataset (default test)"})
    source: str | None = field(default=None, metadata={
        "help": "a folder of other patients with masks (any layout prep reads) instead"})
    layout: str = field(default="auto", metadata={"choices": LAYOUTS, "help": "layout of --source"})
    patients: list[str] | None = field(default=None, metadata={"nargs": "+", "help": "only these patient ids"})
    checkpoint: str = field(default="model", metadata={"choices": CHECKPOINTS, "help": (
        "model (default): the better of best and final after batch-norm recalibration; best for runs without one")})
    threshold: float | None = field(default=None, metadata={
        "help": "probability cut (default: the run's postprocess.json, else 0.5)"})
    postprocess: bool = field(default=True, metadata={"help": (
        "ignore the run's postprocess.json (threshold, small-component removal, hole filling chosen on its "
        "validation patients by mslesion postprocess); default: apply it where the run has one")})
    connectivity: int = field(default=26, metadata={"choices": (6, 18, 26)})
    detection_fraction: float = field(default=0.0, metadata={
        "help": "fraction of a lesion that must be predicted to count as found (0: any overlap)"})
    batch_size: int = 16
    write_masks: bool = field(default=False, metadata={"help": "save predicted masks (NIfTI with the source affine)"})
    examples_per_tertile: int = field(default=1, metadata={"help": "slices per Dice tertile in examples.npz"})
    out_dir: str | None = field(default=None, metadata={
        "help": "output folder (default <run>/eval_<part>[_tta-<mode>]); one run or --ensemble"})
    overwrite: bool = field(default=False, metadata={"help": "replace an evaluation written there before"})
    tta: str = field(default="none", metadata={"choices": TTA_MODES, "help": (
        "test-time augmentation: mean over mirrored (flip) or also rotated (flip+rot90) slices")})
    uncertainty: str = field(default="none", metadata={"choices": UNCERTAINTY, "help": (
        "std (over ensemble members and TTA passes) or entropy: each predicted lesion's uncertainty and whether "
        "it is a true or false lesion (lesion_uncertainty.csv), and how well it tells them apart (summary.json)")})
    # more runs whose probabilities are averaged with the run's (needs out_dir); the CLI's --ensemble fills it
    ensemble: list[str] | None = None

    @classmethod
    def from_dict(cls, d: dict) -> EvalConfig:
        return config_from_dict(cls, d, "evaluation")
