"""Run folders: claimed, locked, checked against the options that started them, and their records.

A run folder holds only the files listed in :data:`RUN_FILES`; a folder holding anything else is refused,
so ``--overwrite`` never removes what the toolkit did not write."""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import MISSING, asdict, fields
from pathlib import Path

from mslesion import __version__, outputs
from mslesion.fileio import atomic_path, load_json, save_json, save_text
from mslesion.folders import DatasetFolder, RunFolder
from mslesion.outputs import OutputError
from mslesion.paths import ENVIRONMENT, FINAL, PREP_CONFIG, RUN_CONFIG, STATE, SUMMARY
from mslesion.train import tensorboard_logs
from mslesion.train.config import run_dir_for

__all__ = ["RunConfigError", "open_run", "check_run_inputs", "config_differences", "RUN_FILES", "write_run_records",
           "TEMP_NAME", "matches_any", "short_error", "listed", "read_state", "remove_backups", "is_finished", "begin_run",
           "mark_started"]  # fmt: skip


# fileio's temporary names (.<name>.mslesion-XXXXXXXX.tmp...), which a kill leaves behind
TEMP_NAME = r"\.(?P<name>.+)\.mslesion-[A-Za-z0-9_]{8}\.(?:tmp|old)(?:\..*)?"


#: top-level names a run folder may hold (regular expressions); a folder holding anything else is refused
RUN_FILES = (
    r"config\.json", r"prep_config\.json", r"prep3d_config\.json", r"environment\.json", r"history\.csv",
    r"summary\.txt", r"best\.keras", r"final\.keras", r"model\.keras", r"final_eval\.json", r"state\.json", r"fitted\.weights\.h5",
    r"backup", r"tensorboard", r"postprocess\.json", r"postprocess_grid\.csv",
)  # fmt: skip


# written into a run by mslesion evaluate: eval_<part>/, its lock and its temporaries
_RUN_EXTRAS = (r"eval_.+", r"\.eval_.+\.lock", TEMP_NAME)


_BACKUP_FILES = (r"epoch_\d+\.weights\.h5", r"epoch_\d+\.json", TEMP_NAME)


_EVAL_FILES = (r"per_patient\.csv", r"lesions\.csv", r"slices\.csv", r"failures\.csv", r"summary\.json",
               r"examples\.npz", r"masks", r"\.mslesion\.json", TEMP_NAME)  # fmt: skip


# options that change how a run executes, not what it computes: a resume may change them
_RUNTIME_FIELDS = frozenset({"cache_gb", "workers", "input_pipeline", "augment_on", "tensorboard"})


class RunConfigError(OutputError):
    """A run folder already holds a run started with other options."""


def matches_any(name: str, patterns) -> bool:
    return any(re.fullmatch(p, name) for p in patterns)


def short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def listed(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def write_run_records(run: Path, dataset: str, record: str, resolved: dict, environment: dict, model) -> None:
    """Write a run's config.json, environment.json, summary.txt and a copy of the dataset's ``record`` (2D and 3D).

    The copied record keeps the run usable for prediction without its dataset folder.
    """
    save_json(run / RUN_CONFIG, resolved)
    save_json(run / ENVIRONMENT, environment)
    with atomic_path(run / record) as tmp:
        shutil.copyfile(Path(dataset) / record, tmp)
    lines: list[str] = []
    model.summary(print_fn=lambda line, **_: lines.append(line))
    save_text(run / SUMMARY, "\n".join(lines) + "\n")


def check_run_inputs(config, record: str = PREP_CONFIG) -> None:
    """Fail before anything is written: a prepared dataset (``record`` and ``splits.json``), known model and loss.

    Raises:
        DataError: the dataset folder is missing or not prepared.
        UnknownModelError, UnknownOptionError: an unknown model or loss name (both KeyErrors;
            the message lists the known ones).
    """
    import difflib

    from mslesion.errors import UnknownOptionError
    from mslesion.models.registry import model_spec
    from mslesion.train.losses import LOSSES

    DatasetFolder.open(config.dataset, record)
    model_spec(config.model)
    if config.loss not in LOSSES:
        close = difflib.get_close_matches(str(config.loss), sorted(LOSSES), n=2)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise UnknownOptionError(f"unknown loss {config.loss!r}; {hint}known: {', '.join(sorted(LOSSES))}")


def _user_config(config) -> dict:
    """The options of ``config`` as JSON values, paths resolved: what a re-run must repeat to resume."""
    d = asdict(config)
    d["dataset"] = str(Path(config.dataset).resolve())
    d["runs_root"] = str(Path(config.runs_root).resolve())
    d["run_dir"] = str(Path(config.run_dir).resolve()) if config.run_dir else None
    return json.loads(json.dumps(d, default=str))


def config_differences(old: dict, new: dict, cls) -> list[str]:
    """``"key: old -> new"`` for each option of the config dataclass ``cls`` that differs.

    Both are :func:`_user_config` dicts; a key missing from ``old`` (an option added
    since) counts as its default. ``run_dir`` is not compared (the folder is the same
    however it was named), nor ``runs_root`` when a ``run_dir`` names the folder, nor
    options that only change how the run executes (``cache_gb``, ``workers``).
    """
    defaults = {f.name: f.default if f.default is not MISSING else f.default_factory()
                for f in fields(cls) if f.default is not MISSING or f.default_factory is not MISSING}  # fmt: skip
    defaults = json.loads(json.dumps(defaults, default=str))
    skip = set(_RUNTIME_FIELDS) | {"run_dir"}
    if old.get("run_dir") or new.get("run_dir"):
        skip.add("runs_root")
    diffs = []
    for f in fields(cls):
        a, b = old.get(f.name, defaults.get(f.name)), new.get(f.name, defaults.get(f.name))
        if f.name not in skip and a != b:
            diffs.append(f"{f.name}: {a!r} -> {b!r}")
    return diffs


def read_state(run: Path) -> dict | None:
    path = run / STATE
    if not path.is_file():
        return None
    try:
        state = load_json(path)
    except (OSError, ValueError) as exc:
        raise OutputError(f"{path}: unreadable ({short_error(exc)}); pass --overwrite to start the run afresh") from None
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict) or "phase" not in state:
        raise OutputError(f"{path}: not a run state mslesion wrote; pass --overwrite to start the run afresh")
    return state


def _remove_stale_temps(run: Path) -> None:
    """Remove a killed run's temporaries from the run folder and ``backup/``.

    In the run folder only temporaries of the run's own files go: an evaluation
    running beside the run (its ``.eval_<part>...`` folders) is left alone.
    """
    backup = run / "backup"
    if backup.is_dir() and not backup.is_symlink():
        outputs.remove_stale_temps(backup)
    for p in run.iterdir():
        m = re.fullmatch(TEMP_NAME, p.name)
        if m and matches_any(m.group("name"), RUN_FILES) and p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)


def _check_backup(run: Path) -> None:
    backup = run / "backup"
    if not os.path.lexists(backup):
        return
    if not backup.is_dir() or backup.is_symlink():
        raise OutputError(f"{backup}: not a folder mslesion wrote; move it out first")
    foreign = sorted(p.name for p in backup.iterdir() if not matches_any(p.name, _BACKUP_FILES))
    if foreign:
        raise OutputError(f"{backup}: holds files mslesion did not write ({listed(foreign)}); move them out first")


def remove_backups(run: Path) -> None:
    backup = run / "backup"
    if not backup.is_dir():
        return
    for p in backup.iterdir():
        if matches_any(p.name, _BACKUP_FILES) and p.is_file():
            p.unlink()
    with suppress(OSError):  # still holds something: left as it is
        backup.rmdir()


def _clear_run(run: Path) -> None:
    """Remove what an earlier run wrote in ``run`` (``overwrite``), its evaluations included; nothing else."""
    remove_backups(run)
    tensorboard_logs.remove_folder(run)
    for p in run.iterdir():
        if p.name in ("backup", tensorboard_logs.FOLDER):
            continue
        if matches_any(p.name, RUN_FILES) and (p.is_file() or p.is_symlink()):
            p.unlink()
        elif re.fullmatch(r"eval_.+", p.name) and p.is_dir() and not p.is_symlink():
            # an evaluation of the model being replaced; only if it holds nothing but evaluate's own files
            if all(matches_any(q.name, _EVAL_FILES) for q in p.iterdir()):
                shutil.rmtree(p)
            else:
                warnings.warn(f"{p}: holds files mslesion evaluate did not write; left in place", stacklevel=4)


def _unclaim(run: Path) -> None:
    """Remove a run folder this call created, when it failed before the run started (it holds only the marker)."""
    names = {p.name for p in run.iterdir()} if run.is_dir() else {None}
    if names <= {outputs.MARKER}:
        (run / outputs.MARKER).unlink(missing_ok=True)
        with suppress(OSError):
            run.rmdir()


@contextmanager
def open_run(config, kind: str, overwrite: bool = False) -> Iterator[tuple[Path, dict | None]]:
    """Claim and lock the run folder of ``config`` for the whole run; yields ``(run, state)``.

    ``state`` is the folder's ``state.json``: None for a new run (or, with
    ``overwrite``, once the earlier run's files are removed). A killed run's
    temporaries are removed first. A folder this call created is removed again
    when the run fails before it starts (a model option that does not build).

    Raises:
        OutputError: the folder holds files mslesion did not write, or overlaps the dataset.
        OutputLockedError: another process is writing the same folder.
        RunConfigError: it holds a run started with other options (and not ``overwrite``).
    """
    path = run_dir_for(config)
    new = not os.path.lexists(path)
    run = outputs.claim_dir(path, kind, known=RUN_FILES + _RUN_EXTRAS, inputs=[config.dataset])
    with RunFolder(run).locked():
        try:
            _remove_stale_temps(run)
            _check_backup(run)
            tensorboard_logs.check_folder(run)
            state = read_state(run)
            if overwrite:
                _clear_run(run)
                state = None
            elif state is None:
                left = sorted(p.name for p in run.iterdir() if matches_any(p.name, RUN_FILES))
                if left:
                    raise OutputError(f"{run}: holds files of an earlier run ({listed(left)}) but no state.json; "
                                      "pass --overwrite to start the run afresh")  # fmt: skip
            else:
                diffs = config_differences(state["config"], _user_config(config), type(config))
                if diffs:
                    raise RunConfigError(f"{run}: holds a run started with other options ({'; '.join(diffs)}); "
                                         "repeat them to resume it, or pass --overwrite to start it afresh")
            yield run, state
        except BaseException:
            if new and not (run / STATE).exists():
                _unclaim(run)
            raise


def is_finished(run: Path, state: dict | None) -> bool:
    """True (and says so) when ``run`` is a finished run: it is then left alone."""
    if state is None or state.get("phase") != "done":
        return False
    if not (run / FINAL).is_file():
        raise OutputError(f"{run}: state.json says the run finished but final.keras is missing; "
                          "pass --overwrite to train it afresh")  # fmt: skip
    print(f"{run}: already finished ({state.get('fit_epochs')} epochs); left as it is "
          "(pass --overwrite to train it afresh)")  # fmt: skip
    return True


def mark_started(run: Path, config, kind: str, state: dict | None) -> dict:
    """The run's state; a new run's is written first, so the folder records its options before anything else."""
    if state is None:
        state = {"kind": kind, "phase": "training", "config": _user_config(config), "mslesion_version": __version__}
        save_json(run / STATE, state)
    return state


def begin_run(config, run: Path, state: dict | None, progress=None) -> bool:
    """Start (or resume) the run in ``run``: announce it, seed and set determinism; False for a finished run.

    Args:
        progress: a :class:`mslesion.progress.JobProgress` told that the run starts, or that it is skipped.
    """
    from mslesion.train import runtime

    if progress is not None:
        progress.start_run(config.tag, config.epochs, f"{config.model} -> {run}")
    if is_finished(run, state):
        if progress is not None:
            progress.skip_run("already finished: skipped")
        return False
    runtime.set_seed(config.seed)
    runtime.set_deterministic(config.deterministic)
    return True
