"""Report subcommands: ``report``, ``demo``."""

from __future__ import annotations

from pathlib import Path

from mslesion.paths import RUN_CONFIG

__all__ = ["add_report", "add_demo"]


def add_report(subparsers) -> None:
    p = subparsers.add_parser("report", help="regenerate every table and figure from run folders into results/")
    p.add_argument("--runs", nargs="+", required=True, help="run folders or folders holding runs (Tables 6.1-6.3...)")
    p.add_argument("--backbones", nargs="+", default=[], help="runs (or roots) of the backbone comparison")
    p.add_argument("--encoders", nargs="+", default=[], help=(
        "runs (or roots) of the encoder comparison (mslesion.study.encoder_comparison.compare_encoders)"))
    p.add_argument("--fine-tuning", nargs="+", default=[], dest="fine_tuning", help=(
        "runs (or roots) of mslesion.study.fine_tuning.fine_tune_report_models"))
    p.add_argument("--tuning", nargs="+", default=[], help="learning-rate search folders (or roots)")
    p.add_argument("--cross-validation", nargs="+", default=[], dest="cross_validations",
                   help="mslesion evaluate --cross-validation folders: a table of per-fold metrics and mean ± SD each")
    p.add_argument("--ablation", nargs="+", default=[], dest="ablations", help=(
        "cross-validation folders of architectures on the same folds (mslesion.study.ablation): one Table 5"))
    p.add_argument("--epoch-study", help="one long run for the epoch-study table")
    p.add_argument("--epoch-every", type=int, default=25)
    p.add_argument("--dataset", help="prepared dataset, for the data figures (glimpse, slices, orthogonal views)")
    p.add_argument("--eval-name", default="eval_test", help="evaluation folder inside each run")
    p.add_argument("--out", default="results")
    p.add_argument("--title", default="mslesion report")
    p.add_argument("--overwrite", action="store_true", help="replace a report mslesion wrote at --out before")

    def run(a):
        from mslesion.report.build import ReportConfig, build_report
        from mslesion.report.tables import find_runs, find_tunings

        def expand(paths, finder):
            return [str(r) for p in paths for r in ([Path(p)] if finder is find_runs and (Path(p) / RUN_CONFIG)
                    .is_file() else finder(p))]  # fmt: skip

        report = build_report(ReportConfig(
            runs=expand(a.runs, find_runs), backbone_runs=expand(a.backbones, find_runs),
            encoder_runs=expand(a.encoders, find_runs),
            fine_tuning_runs=expand(a.fine_tuning, find_runs),
            tunings=expand(a.tuning, find_tunings), cross_validations=a.cross_validations,
            ablations=a.ablations, epoch_study_run=a.epoch_study, epoch_every=a.epoch_every,
            dataset=a.dataset, eval_name=a.eval_name, out=a.out, title=a.title, overwrite=a.overwrite))  # fmt: skip
        print(f"report: {report}")

    p.set_defaults(run=run)


def add_demo(subparsers) -> None:
    from mslesion.study.demo import DemoConfig

    d = DemoConfig()
    p = subparsers.add_parser("demo", help="the whole study, quick, on a synthetic cohort: data -> results/")
    p.add_argument("--data", default=d.data)
    p.add_argument("--runs", default=d.runs)
    p.add_argument("--out", default=d.out)
    p.add_argument("--patients", type=int, default=d.patients)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--overwrite", action="store_true", help="replace what an earlier demo wrote (data, runs, results)")
    p.add_argument("--deterministic", action="store_true", default=None,
                   help="every training run repeats bit for bit on this machine (op determinism)")

    def run(a):
        from mslesion.study.demo import run_demo

        report = run_demo(DemoConfig(data=a.data, runs=a.runs, out=a.out, patients=a.patients, epochs=a.epochs,
                                     seed=a.seed, overwrite=a.overwrite,
                                     deterministic=bool(a.deterministic)))  # fmt: skip
        print(f"results: {report.parent}/ (tables/, figures/, report.md)")

    p.set_defaults(run=run)
