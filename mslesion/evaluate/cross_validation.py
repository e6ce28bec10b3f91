"""Cross-validation evaluation: every patient scored once, by the fold run that held it out (out of fold).

``evaluate_folds(runs, config)`` evaluates each fold run on its own test patients (as ``mslesion evaluate``
does one run) into ``<out>/fold_<k>/`` and writes beside them:

- ``per_patient.csv``: every patient once, with the fold that scored it;
- ``folds.csv``: one row per fold, the mean of each metric over its test patients
  (Rondinella et al. 2023, Table 2);
- ``summary.json``: each metric's mean ± SD across folds and across patients, the folds and their runs.

The runs must be folds of one dataset whose test parts do not overlap (``mslesion prep --split kfold``).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from mslesion import __version__
from mslesion.evaluate.config import EvalConfig
from mslesion.evaluate.summary import SUMMARY_METRICS, summary_stats, trust_summary
from mslesion.fileio import save_csv, save_json
from mslesion.folders import DatasetFolder, RunFolder
from mslesion.outputs import output_dir

__all__ = ["KIND", "fold_runs", "evaluate_folds", "read_folds"]

KIND = "cross-validation"


def fold_runs(paths: list[str | Path]) -> list[RunFolder]:
    """The fold runs ``paths`` name, sorted by fold: run folders, or folders holding ``fold_<k>`` runs.

    Raises:
        ValueError: fewer than two folds, runs of different datasets, a fold given twice, or test
            parts that overlap (then a patient would be scored twice).
    """
    runs = []
    for path in map(Path, paths):
        inner = sorted(path.glob("fold_*/config.json")) if not (path / "config.json").is_file() else []
        runs += [RunFolder.open(c.parent) for c in inner] if inner else [RunFolder.open(path)]
    runs.sort(key=lambda r: r.fold)
    if len(runs) < 2:
        raise ValueError(f"{', '.join(map(str, paths))}: a cross-validation needs the runs of at least two folds "
                         f"(found {len(runs)}); train them with mslesion train --folds all")  # fmt: skip
    datasets = {str(r.dataset) for r in runs}
    if len(datasets) > 1:
        raise ValueError(f"the runs are of different datasets ({', '.join(sorted(datasets))}); "
                         "a cross-validation scores the folds of one")  # fmt: skip
    folds = [r.fold for r in runs]
    if len(set(folds)) != len(folds):
        raise ValueError(f"fold {next(k for k in folds if folds.count(k) > 1)} is given twice "
                         f"({', '.join(str(r.path) for r in runs if folds.count(r.fold) > 1)})")  # fmt: skip
    seen: dict[str, int] = {}
    dataset = DatasetFolder.open(runs[0].dataset)
    for r in runs:
        for pid in dataset.patients("test", r.fold):
            if pid in seen:
                raise ValueError(f"{dataset.path}: patient {pid} is a test patient of folds {seen[pid]} and {r.fold}; "
                                 "out-of-fold scoring needs disjoint test parts (mslesion prep --split kfold)")
            seen[pid] = r.fold
    return runs


def evaluate_folds(runs: list[str | Path], config: EvalConfig | dict | None = None, verbose: bool = True) -> Path:
    """Score each fold run on its own test patients and summarise across folds; returns ``config.out_dir``.

    ``config.part`` and ``config.source`` do not apply (each fold is scored on its held-out test part); the other
    options (checkpoint, threshold, TTA, connectivity...) apply to every fold. Written whole, as an evaluation.
    """
    import pandas as pd

    from mslesion.evaluate.evaluation import evaluate

    config = EvalConfig.from_dict(config) if isinstance(config, dict) else (config or EvalConfig())
    if not config.out_dir:
        raise ValueError("a cross-validation's evaluation belongs to no single run; give out_dir (--out-dir)")
    if config.source or config.ensemble or config.part != "test":
        raise ValueError("a cross-validation scores each fold on its own test patients: "
                         "source, ensemble and part other than test do not apply")  # fmt: skip
    folds = fold_runs(runs)
    out = Path(config.out_dir)
    inputs = [str(folds[0].dataset), *(str(r.path) for r in folds)]
    with output_dir(out, KIND, overwrite=config.overwrite, inputs=inputs) as tmp:
        tables, rows = [], []
        for r in folds:
            if verbose:
                print(f"fold {r.fold}: {r.path}")
            fold_dir = evaluate(r.path, replace(config, out_dir=str(tmp / f"fold_{r.fold}"), overwrite=False),
                                verbose=verbose)  # fmt: skip
            table = pd.read_csv(fold_dir / "per_patient.csv", dtype={"patient": str})
            table.insert(1, "fold", r.fold)
            tables.append(table)
            rows.append({"fold": r.fold, "run": str(r.path), "n_patients": len(table),
                         **{m: float(table[m].mean()) for m in SUMMARY_METRICS if m in table}})  # fmt: skip
        per_patient = pd.concat(tables, ignore_index=True)
        save_csv(tmp / "per_patient.csv", per_patient)
        folds_table = pd.DataFrame(rows)
        save_csv(tmp / "folds.csv", folds_table)
        metrics = [m for m in SUMMARY_METRICS if m in per_patient]
        summary = {
            "kind": KIND, "mslesion_version": __version__, "dataset": str(folds[0].dataset),
            "folds": [{"fold": r.fold, "run": str(r.path), "evaluation": f"fold_{r.fold}"} for r in folds],
            "config": asdict(config), "n_patients": len(per_patient),
            "across_folds": {m: summary_stats(folds_table[m]) for m in metrics},
            "across_patients": {m: summary_stats(per_patient[m]) for m in metrics},
            "trust": trust_summary(per_patient),
        }  # fmt: skip
        save_json(tmp / "summary.json", summary)
    if verbose:
        d = summary["across_folds"]["dice"]
        print(f"out-of-fold Dice over {len(folds)} folds: {d['mean']:.3f} ± {d['std']:.3f} (mean ± SD of fold means); "
              f"{len(per_patient)} patients")  # fmt: skip
    return out


def read_folds(cv_dir: str | Path):
    """A cross-validation's ``folds.csv`` and ``summary.json``, as ``(DataFrame, dict)``."""
    import pandas as pd

    from mslesion.folders import read_json_object

    cv_dir = Path(cv_dir)
    summary = read_json_object(cv_dir / "summary.json", "evaluate the folds again")
    if summary.get("kind") != KIND:
        raise ValueError(f"{cv_dir}: not a cross-validation evaluation (mslesion evaluate --cross-validation)")
    return pd.read_csv(cv_dir / "folds.csv"), summary
