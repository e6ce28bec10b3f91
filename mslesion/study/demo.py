"""``mslesion demo`` / ``make demo``: the whole study, quick, on the synthetic cohort, in one call.

synthetic cohort -> slices -> backbone comparison -> the six Table 6.1 models
-> learning-rate search -> whole-volume evaluation -> every table and figure in
``results/``. Nothing is downloaded: the ImageNet models are built without
their weights (and their VGG16 encoders trained, see
:mod:`mslesion.study.experiments`), which the tables say. About 10 minutes on a
2-core CPU; the same chain on real data is in the README.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mslesion.fileio import save_json

__all__ = ["DemoConfig", "run_demo"]


@dataclass
class DemoConfig:
    """Quick-mode settings; every run also saves its own config next to its results."""

    data: str = "data"
    runs: str = "runs/demo"
    out: str = "results"
    patients: int = 10
    shape: tuple[int, int, int] = (128, 128, 16)
    spacing_mm: tuple[float, float, float] = (1.8, 1.8, 5.0)
    size: int = 64
    selection: str = "brain"  # whole-volume evaluation sees every slice, so train on brain slices too
    loss: str = "bce_dice"
    learning_rate: float = 3e-3
    epochs: int = 12
    backbone_epochs: int = 8
    backbones: tuple[str, ...] = ("vgg16", "resnet34", "mobilenetv2", "efficientnetb0")
    lr_epochs: int = 4
    learning_rates: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4)
    batch_size: int = 8
    seed: int = 0
    report_models: list[str] | None = None  # None: all six
    native_models: bool = True  # the related works (README, References): pyramid attention U-Net, FC-DenseNet triplets, 3D R2 attention U-Net
    epochs_3d: int = 8
    overwrite: bool = False  # replace what an earlier demo wrote (cohort, datasets, runs, results)
    deterministic: bool = False  # every training run repeats bit for bit on this machine
    extra: dict = field(default_factory=dict)


def _say(msg: str, start: float) -> None:
    print(f"[{time.perf_counter() - start:6.0f} s] {msg}", flush=True)


def run_demo(config: DemoConfig | None = None) -> Path:
    """Run the quick study end to end; returns ``<out>/report.md``."""
    from mslesion.data.quick import quick_synthetic_dataset
    from mslesion.report.build import ReportConfig, build_report
    from mslesion.study import experiments

    c = config or DemoConfig()
    start = time.perf_counter()
    raw, slices, runs = Path(c.data) / "raw" / "synthetic", Path(c.data) / "slices" / "demo", Path(c.runs)
    summary = quick_synthetic_dataset(slices, c.patients, size=c.size, shape=c.shape, spacing_mm=c.spacing_mm,
                                      selection=c.selection, seed=c.seed, raw=raw, overwrite=c.overwrite)  # fmt: skip
    _say(str(summary).replace("\n", "; "), start)
    common = {"loss": c.loss, "learning_rate": c.learning_rate, "batch_size": c.batch_size, "seed": c.seed,
              "deterministic": c.deterministic, **c.extra}  # fmt: skip
    backbone_runs = experiments.compare_backbones(slices, runs / "backbones", c.backbones, epochs=c.backbone_epochs,
                                                  weights=None, overwrite=c.overwrite, **common)  # fmt: skip
    _say(f"backbone comparison: {len(backbone_runs)} runs", start)
    model_runs = experiments.train_report_models(slices, runs / "models", c.epochs, c.report_models, quick=True,
                                                 weights=None, overwrite=c.overwrite, **common)  # fmt: skip
    _say(f"Table 6.1 models trained: {len(model_runs)} runs", start)
    tuning = experiments.learning_rate_search(slices, runs / "tuning", "kuc.unet",
                                              {"filter_num": experiments.QUICK_FILTERS["scratch"]},
                                              c.learning_rates, c.lr_epochs, loss=c.loss, batch_size=c.batch_size,
                                              seed=c.seed, deterministic=c.deterministic)  # fmt: skip
    _say("learning-rate search done", start)
    experiments.evaluate_runs(model_runs)
    _say("whole-volume evaluation done", start)
    native_runs = _native_models(c, slices, runs, common, start) if c.native_models else []
    every = max(1, c.epochs // 4)
    scratch = [r for r in model_runs if "unet_scratch" in str(r) and "r2" not in str(r) and "att" not in str(r)]
    save_json(runs / "demo_config.json", asdict(c))
    report = build_report(ReportConfig(
        runs=[str(r) for r in model_runs], backbone_runs=[str(r) for r in backbone_runs], tunings=[str(tuning)],
        comparison_runs=[str(r) for r in model_runs + native_runs],
        attention_run=str(native_runs[0]) if native_runs else None,
        epoch_study_run=str(scratch[0]) if scratch else None, epoch_every=every, dataset=str(slices), out=c.out,
        overwrite=c.overwrite,
        title="mslesion demo report (synthetic cohort, quick mode)",
        note=(f"Produced by `make demo` (`mslesion demo`): {c.patients} synthetic patients, {c.size}x{c.size} "
              f"{c.selection} slices, {c.epochs} epochs per model, loss {c.loss}, Adam {c.learning_rate:g}, "
              f"seed {c.seed}. "
              "Quick mode: decoders narrowed and no ImageNet weights (offline), so parameter counts differ from "
              "the backbone report's Table 6.1 and the 'ImageNet' models train their VGG16 encoder. Numbers show the "
              "pipeline works; they are not a study result. The native models of the related works (Rondinella et al. 2023; the 3DR2AUNet paper, 2024; Røvang 2021) run on the same "
              "patients and split (FC-DenseNet on brain-cropped slice triplets, the 3D R2 attention U-Net on "
              "16x32x32 patches of the normalised volumes)."),
    ))  # fmt: skip
    _say(f"report written: {report}", start)
    return report


def _native_models(c: DemoConfig, slices: Path, runs: Path, common: dict, start: float) -> list[Path]:
    """The seeds' own architectures on the same patients and split: 2D pyramid, 2.5D FC-DenseNet, 3D patches."""
    from mslesion.study import experiments

    native = experiments.train_native_models(slices, runs / "native", c.epochs, c.epochs_3d, quick=True,
                                             overwrite=c.overwrite, **common)  # fmt: skip
    experiments.evaluate_runs(native)
    _say("native models of the related works trained and evaluated", start)
    return native
