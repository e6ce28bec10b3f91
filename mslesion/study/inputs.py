"""What the notebooks start from: the working folder, a prepared dataset (synthetic only by name), the runs folder."""

from __future__ import annotations

from pathlib import Path

from mslesion.paths import MANIFEST
from mslesion.study.recipes import recipe_options

__all__ = ["ensure_dataset", "notebook_inputs"]


def notebook_inputs(dataset: str | Path, runs: str | Path, work: str | Path | None = None, quick: bool = False,
                    seed: int = 0, recipe_name: str | None = None, **recipe_overrides) -> tuple:
    """What notebooks 02 and 03 start from: ``(work, dataset, options, runs_dir)``, each said in a line.

    The working folder (:func:`mslesion.env.workspace.working_folder`), the prepared dataset
    (:func:`ensure_dataset`; synthetic only by name, at 64x64 when ``quick``), the training
    options of the recipe with ``recipe_overrides`` (None: the recipe's), and the runs folder,
    brought forward from an earlier session's output when this one has none.
    """
    from mslesion.env.workspace import bring_forward, describe_dataset, working_folder
    from mslesion.report.tables import find_runs

    work = working_folder(work)
    prepared = ensure_dataset(dataset, work, size=64 if quick else 256, seed=seed)
    print("working folder:", work)
    print(describe_dataset(prepared))
    options = recipe_options(recipe_name, **recipe_overrides)
    print("training options:", options)
    runs_dir = bring_forward(runs, work, find_runs)  # finished runs are skipped, unfinished ones resume
    return work, prepared, options, runs_dir


def ensure_dataset(dataset: str | Path, work: str | Path | None = None, patients: int = 10, size: int = 64,
                   selection: str = "brain", seed: int = 0, inputs: list[Path] | None = None) -> Path:  # fmt: skip
    """The prepared dataset ``dataset`` names, found in ``work`` or an input folder; synthetic only by name.

    ``dataset`` is a folder prepared by notebook 01 (relative to ``work``, the working
    folder, or absolute), or ``"synthetic"``: a synthetic cohort of ``patients`` made and
    prepared under ``work`` (quick runs with no data). ``inputs``: read-only folders where
    an earlier session's output may be (default: :func:`mslesion.env.workspace.input_roots`).

    Raises:
        DataNotFoundError: no prepared dataset where it looked (the message lists the places).
    """
    from mslesion.data.quick import quick_synthetic_dataset
    from mslesion.env.workspace import SYNTHETIC, DataNotFoundError, find_prepared, input_roots

    work = Path(work) if work is not None else Path.cwd()
    if str(dataset) == SYNTHETIC:
        target = work / "data" / "slices" / f"synthetic_{size}"
        if not (target / MANIFEST).is_file():
            quick_synthetic_dataset(target, patients, size=size, selection=selection, seed=seed,
                                    raw=work / "data" / "raw" / "synthetic", overwrite=True)  # fmt: skip
        return target
    inputs = input_roots() if inputs is None else inputs
    found = find_prepared(dataset, work, MANIFEST, inputs)
    if found is None:
        looked = [str(work / dataset) if not Path(dataset).is_absolute() else str(dataset)]
        looked += [str(r / dataset) for r in inputs] if not Path(dataset).is_absolute() else []
        raise DataNotFoundError(f"{dataset}: no prepared dataset (manifest.csv) in {', '.join(looked)}; run notebook "
                                "01 first (or attach an earlier session's output as an input), or set "
                                f"DATASET = {SYNTHETIC!r} for the built-in synthetic cohort")  # fmt: skip
    return found
