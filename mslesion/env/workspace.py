"""Where a notebook reads and writes: the platform, its working folder, its inputs, and the data found there.

* Kaggle: everything is written under ``/kaggle/working`` (kept as the notebook's
  output); data and earlier sessions' outputs are attached read-only under
  ``/kaggle/input``.
* Colab: a Drive folder when Drive is mounted (it outlives the session), else
  ``/content`` with a note on how to mount it.
* Anywhere else: the current folder.

Synthetic data is used only when asked for by name (``"synthetic"``): a missing
dataset is an error that says where it looked and how to attach the data.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from mslesion.errors import MslesionError
from mslesion.paths import MANIFEST, PREP_CONFIG, SPLITS

__all__ = ["SYNTHETIC", "DataNotFoundError", "platform_name", "working_folder", "input_roots", "find_prepared",
           "find_cohort", "describe_source", "bring_forward", "resolve_source", "is_synthetic", "describe_dataset"]  # fmt: skip

#: The name that asks for the built-in synthetic cohort instead of real data.
SYNTHETIC = "synthetic"
KAGGLE_WORKING, KAGGLE_INPUT = Path("/kaggle/working"), Path("/kaggle/input")
COLAB_DRIVE = Path("/content/drive/MyDrive")

#: How to get the data onto each platform, for the error message.
HOW_TO_ATTACH = {
    "kaggle": "attach the dataset with 'Add Input' (it appears under /kaggle/input), or set SOURCE to its folder",
    "colab": "copy or unzip the dataset into Drive or /content and set SOURCE to its folder",
    "local": "download the dataset and set SOURCE to its folder",
}


class DataNotFoundError(MslesionError, FileNotFoundError):
    """No data where a notebook looked; the message lists the places and how to attach the data."""


def platform_name() -> str:
    """``kaggle``, ``colab`` or ``local``."""
    if os.environ.get("KAGGLE_KERNEL_RUN_TYPE") or os.environ.get("KAGGLE_URL_BASE"):
        return "kaggle"
    if "google.colab" in sys.modules or os.environ.get("COLAB_RELEASE_TAG"):
        return "colab"
    return "local"


def working_folder(explicit: str | Path | None = None, platform: str | None = None) -> Path:
    """The one folder a notebook writes to (created if needed); ``explicit`` wins."""
    platform = platform or platform_name()
    if explicit is not None:
        folder = Path(explicit)
    elif platform == "kaggle":
        folder = KAGGLE_WORKING
    elif platform == "colab" and COLAB_DRIVE.is_dir():
        folder = COLAB_DRIVE / "mslesion_work"
    else:
        if platform == "colab":
            print("Drive is not mounted: outputs go to /content and end with the session. To keep them, run "
                  "`from google.colab import drive; drive.mount('/content/drive')` and re-run this cell.")  # fmt: skip
            folder = Path("/content")
        else:
            folder = Path.cwd()
    folder.mkdir(parents=True, exist_ok=True)
    return folder.resolve()


def input_roots(platform: str | None = None, extra: list[str | Path] | None = None) -> list[Path]:
    """Read-only places earlier sessions' outputs and attached datasets may be in (Kaggle inputs, Drive)."""
    platform = platform or platform_name()
    roots = [Path(p) for p in extra or []]
    if platform == "kaggle" and KAGGLE_INPUT.is_dir():
        roots += sorted(p for p in KAGGLE_INPUT.iterdir() if p.is_dir())
    if platform == "colab" and COLAB_DRIVE.is_dir():
        roots.append(COLAB_DRIVE)
    return roots


def find_prepared(relative: str | Path, work: Path, marker: str | Callable[[Path], bool] = MANIFEST,
                  inputs: list[Path] | None = None) -> Path | None:  # fmt: skip
    """``work/relative`` when it holds ``marker``, else the first input (an earlier session's output) that does.

    ``marker``: a file name, or a test of the folder. An absolute ``relative`` is taken as it is.
    """
    relative = Path(relative)
    candidates = [relative] if relative.is_absolute() else [work / relative]
    if not relative.is_absolute():
        for root in inputs or []:
            candidates += [root / relative, *sorted(root.glob(f"*/{relative}"))]
    test = marker if callable(marker) else (lambda folder: (folder / marker).exists())
    return next((c for c in candidates if c.is_dir() and test(c)), None)


def bring_forward(relative: str | Path, work: Path, marker: str | Callable[[Path], bool],
                  inputs: list[Path] | None = None) -> Path:  # fmt: skip
    """``work/relative``; when it is absent and an earlier session's output (read-only input) has it, a copy of that.

    So a re-run notebook skips what an earlier session finished and resumes what it left
    unfinished, writing only to the working folder. Nothing in ``work`` is replaced.
    """
    import shutil

    target = Path(relative) if Path(relative).is_absolute() else work / relative
    if target.exists():
        return target
    found = find_prepared(relative, work, marker, input_roots() if inputs is None else inputs)
    if found is not None and found != target:
        print(f"continuing from an earlier session's output: copying {found} to {target}")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.copying")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(found, tmp)
        tmp.rename(target)
    return target


def _looks_like_cohort(folder: Path) -> bool:
    from mslesion.data.layouts import detect_layout
    from mslesion.errors import NoCasesFoundError

    try:
        detect_layout(folder)
        return True
    except (NoCasesFoundError, OSError):
        return False


def find_cohort(roots: list[Path], max_depth: int = 4) -> Path | None:
    """The first folder under ``roots`` (breadth first, ``max_depth`` levels) that holds a known cohort layout.

    Folder names may contain spaces; the patient information spreadsheet beside the
    patient folders is ignored.
    """
    level = [r for r in roots if r.is_dir()]
    for _ in range(max_depth + 1):
        for folder in level:
            if _looks_like_cohort(folder):
                return folder
        level = [d for f in level for d in sorted(f.iterdir()) if d.is_dir() and not d.name.startswith(".")]
        if not level:
            break
    return None


def describe_source(source: str | Path | None, roots: list[Path]) -> str:
    """The error text for data that was not found: where it looked and how to attach the data."""
    where = [str(source)] if source else [str(r) for r in roots] or ["(no input folder on this platform)"]
    return (f"no dataset found in {', '.join(where)}; {HOW_TO_ATTACH[platform_name()]}. "
            f"For a run without data, set SOURCE = {SYNTHETIC!r} (the built-in synthetic cohort).")


def resolve_source(source: str | Path | None, work: Path, patients: int = 10, seed: int = 0,
                   roots: list[Path] | None = None) -> Path:  # fmt: skip
    """The cohort folder notebook 01 prepares: ``source`` (a folder or ``"synthetic"``), else one found in the inputs.

    ``"synthetic"`` writes a synthetic cohort of ``patients`` under ``work/data/raw/synthetic``.
    A folder is searched (a few levels down) for a known layout, so the Kaggle copy of a
    dataset, nested in folders with spaces, is found from its input root.

    Raises:
        DataNotFoundError: nothing found; the message lists where it looked and how to attach the data.
    """
    if str(source) == SYNTHETIC:
        from mslesion.data.synthetic import generate_cohort

        written = generate_cohort(work / "data" / "raw" / "synthetic", patients, seed=seed, overwrite=True)
        return Path(written[0]).parent
    search = [Path(source)] if source else (input_roots() if roots is None else roots)
    if source and not Path(source).exists():
        raise DataNotFoundError(f"SOURCE={source}: no such folder; {HOW_TO_ATTACH[platform_name()]}")
    found = find_cohort(search)
    if found is None:
        raise DataNotFoundError(describe_source(source, search))
    return found


def is_synthetic(source: str | Path) -> bool:
    """Whether ``source`` is a cohort :func:`mslesion.data.synthetic.generate_cohort` wrote."""
    return (Path(source) / "cohort.json").is_file()


def describe_dataset(dataset: str | Path, fold: int = 0) -> str:
    """One line on what a prepared dataset holds: its source (real or synthetic), patients, slices, split."""
    from mslesion.data.reader import read_manifest
    from mslesion.data.splits import load_splits
    from mslesion.fileio import load_json

    dataset = Path(dataset)
    config = load_json(dataset / PREP_CONFIG)
    manifest = read_manifest(dataset)
    source = config.get("source", "?")
    kind = "SYNTHETIC cohort" if is_synthetic(source) else "real data"
    parts = ""
    if (dataset / SPLITS).is_file():
        folds = load_splits(dataset / SPLITS)["folds"]
        parts = ", fold {} split {}".format(fold, " / ".join(f"{k} {len(v)}" for k, v in folds[fold].items()))
    size = "x".join(map(str, config.get("size", [])))
    return (f"{dataset}: {kind} from {source}; {manifest['patient'].nunique()} patients, {len(manifest)} slices "
            f"of {size}{parts}")
