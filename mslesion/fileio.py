"""Atomic writes: every output appears whole under its final name or not at all."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()

__all__ = ["atomic_path", "atomic_dir", "crash_point", "save_npy", "save_json", "save_text", "load_npy", "load_json",
           "jsonable", "save_csv"]


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` on success.

    The temporary name keeps the suffix (``.x.tmp123.nii.gz``) so libraries that
    pick a format by extension (nibabel, OpenCV) still recognise it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    # named like atomic_dir's temporaries so mslesion.outputs.remove_stale_temps can find them after a crash
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.mslesion-", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; give outputs normal permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | Path, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; move it to ``path`` on success.

    An existing ``path`` is replaced only with ``replace=True``, and only once the
    new content is complete. Policy (whose folder may be replaced, locks,
    recovery of an interrupted swap) lives in :func:`mslesion.outputs.output_dir`.

    Raises:
        FileExistsError: ``path`` exists and ``replace`` is False.
    """
    path = Path(path).absolute()
    if os.path.lexists(path) and not replace:
        raise FileExistsError(f"{path}: already exists; not replacing it")
    path.parent.mkdir(parents=True, exist_ok=True)
    # the name pattern is what mslesion.outputs.recover_swap removes after a crash: keep the two in step
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.mslesion-", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)
    try:
        yield tmp
        if os.path.lexists(path):
            trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.mslesion-", suffix=".old", dir=path.parent))
            os.replace(path, trash / "old")
            crash_point("atomic_dir.between_renames")
            os.replace(tmp, path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def crash_point(name: str) -> None:
    """Test hook: the process dies here, as under ``kill -9``, when ``MSLESION_CRASH_AT`` names this point.

    Lets tests hit crash windows deterministically instead of by timing.
    """
    if os.environ.get("MSLESION_CRASH_AT") == name:
        os._exit(137)


def save_npy(path: str | Path, array: np.ndarray) -> None:
    """Save ``array`` as a plain (memory-mappable, pickle-free) ``.npy`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(array), allow_pickle=False)


def load_npy(path: str | Path, mmap: bool = False) -> np.ndarray:
    """Load a ``.npy`` array without ever unpickling; ``mmap`` maps it read-only."""
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def save_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON atomically (stable diffs)."""
    save_text(path, json.dumps(obj, indent=2, sort_keys=True, default=jsonable) + "\n")


def load_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def save_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def save_csv(path: str | Path, table, columns: list[str] | None = None, float_format: str | None = "%.6g",
             na_rep: str = "") -> None:
    """Write a DataFrame (or a list of row dicts, with ``columns`` for an empty one) as CSV atomically.

    One convention for every table the toolkit writes: no index, ``\\n`` line ends, floats to 6 significant digits
    (``float_format=None``: as Python prints them, for records read back as data), missing values as ``na_rep``.
    Keys of a row that ``columns`` does not name are left out.
    """
    import pandas as pd

    frame = table if isinstance(table, pd.DataFrame) else pd.DataFrame(table, columns=columns)
    save_text(path, frame.to_csv(index=False, lineterminator="\n", float_format=float_format, na_rep=na_rep))


def jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
