"""Folders mslesion writes: who owns them, one writer at a time, and safe replacement.

Every command that writes a folder goes through this module:

* :func:`output_dir` for folders built whole and swapped in (cohorts, datasets,
  volumes, evaluations, predictions, reports): checks, a lock, recovery of an
  interrupted earlier swap, then :func:`mslesion.fileio.atomic_dir`; the
  ownership marker :data:`MARKER` is written into the new folder last, so only
  complete folders carry it.
* :func:`claim_dir` for folders filled over time (training runs): the marker is
  written when the folder is created, and a lock is held while writing.

The rules (tested in ``tests/test_safety.py``):

* an existing folder is replaced only when its marker says mslesion wrote it,
  as the same kind of output, and the caller passed ``overwrite``; a folder
  holding anything else is refused whatever ``overwrite`` says, and so is a
  marked folder in which someone has since put files of their own;
* an output may not be, hold, or sit inside one of its inputs, nor be the
  current folder (or hold it);
* nothing outside the output is deleted, except this module's own temporaries
  beside it (matched by their exact naming pattern).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mslesion import __version__
from mslesion.errors import MslesionError
from mslesion.fileio import atomic_dir, load_json, save_json

try:  # POSIX; elsewhere (Windows) no lock is taken, see locked()
    import fcntl
except ImportError:  # pragma: no cover - not on Linux CI
    fcntl = None

__all__ = [
    "MARKER", "OutputError", "OutputLockedError", "read_marker", "write_marker", "check_output",
    "check_inside", "output_dir", "claim_dir", "locked", "recover_swap", "remove_stale_temps",
]  # fmt: skip

MARKER = ".mslesion.json"
_TEMP_RE = r"^\.{name}\.(?:mslesion-)?[A-Za-z0-9_]{{8}}\.(?P<kind>tmp|old)$"


class OutputError(MslesionError):
    """An output folder that may not be written (not ours, overlapping an input, ...)."""


class OutputLockedError(OutputError):
    """Another process is writing the same output folder."""


def read_marker(folder: str | Path) -> dict | None:
    """The ownership marker of ``folder`` (``{"kind", "entries", ...}``), or None when it has none."""
    path = Path(folder) / MARKER
    if not path.is_file():
        return None
    try:
        marker = load_json(path)
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and "kind" in marker else None


def write_marker(folder: str | Path, kind: str, **info) -> None:
    """Mark ``folder`` as an mslesion ``kind``; records its top-level entries (nothing time-dependent)."""
    folder = Path(folder)
    entries = sorted(p.name for p in folder.iterdir() if p.name != MARKER)
    save_json(folder / MARKER, {"kind": kind, "entries": entries, "mslesion_version": __version__, **info})


def _examples(names: list[str], n: int = 3) -> str:
    shown = ", ".join(names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def check_inside(root: str | Path, path: str | Path) -> Path:
    """``path`` resolved, after checking that it lies inside ``root`` (no ``..`` or link escapes)."""
    base = Path(root).resolve()
    target = Path(path).resolve()
    if target != base and base not in target.parents:
        raise OutputError(f"{path}: resolves outside the output folder {root}; refusing to write there")
    return target


def _overlap(out: Path, inputs: Iterable[str | Path]) -> None:
    cwd = Path.cwd().resolve()
    if out == cwd or out in cwd.parents:
        raise OutputError(f"{out}: is the current folder (or holds it); name a new folder to write into")
    for item in inputs:
        if item is None:
            continue
        src = Path(item).resolve()
        if out == src:
            raise OutputError(f"{out}: is also the input {item}; write to a separate folder")
        if src in out.parents:
            raise OutputError(f"{out}: lies inside the input {item}; write to a folder outside it")
        if out in src.parents:
            raise OutputError(f"{out}: holds the input {item}; write to a folder that does not contain it")


def check_output(
    path: str | Path,
    kind: str,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
    allowed: Iterable[str] = (),
) -> Path:
    """Check that ``path`` may be (re)written as an mslesion ``kind``; returns it resolved. Writes nothing.

    Args:
        overwrite: replace an existing output of the same kind (the user asked for it).
        inputs: folders or files the command reads; the output must not overlap them.
        allowed: top-level names a folder of this kind may hold beyond its marker's
            ``entries`` (e.g. evaluation folders inside a run).

    Raises:
        OutputError: with a one-line message naming ``path`` and what is in the way.
    """
    out = Path(path).resolve()
    _overlap(out, inputs)
    if not os.path.lexists(out):
        return out
    if not out.is_dir():
        raise OutputError(f"{path}: exists and is not a folder; choose another output path")
    names = sorted(p.name for p in out.iterdir())
    marker = read_marker(out)
    if marker is None:
        if not names:
            return out
        raise OutputError(f"{path}: holds {len(names)} {'entry' if len(names) == 1 else 'entries'} mslesion did not write ({_examples(names)}); "
                          "choose a new or empty folder")  # fmt: skip
    if marker["kind"] != kind:
        raise OutputError(f"{path}: is an mslesion {marker['kind']}, not a {kind}; choose another folder")
    known = set(marker.get("entries", [])) | {MARKER} | set(allowed)
    foreign = [n for n in names if n not in known and not _matches_allowed(n, allowed)]
    if foreign:
        raise OutputError(f"{path}: an mslesion {kind} that now also holds files mslesion did not write "
                          f"({_examples(foreign)}); move them out first")  # fmt: skip
    if not overwrite:
        raise OutputError(f"{path}: already holds an mslesion {kind}; pass --overwrite to replace it")
    return out


def _matches_allowed(name: str, allowed: Iterable[str]) -> bool:
    return any(re.fullmatch(a, name) for a in allowed)


def _lock_path(path: Path) -> Path:
    return path.parent / f".{path.name}.lock"


@contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on output ``path`` (a ``.<name>.lock`` file beside it, removed after).

    Raises:
        OutputLockedError: at once, naming the process that holds it.
    """
    path = Path(path).resolve()
    if fcntl is None:  # pragma: no cover
        yield
        return
    lock = _lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise OutputLockedError(f"{path}: being written by another mslesion process ({holder}); "
                                    "wait for it to finish or stop it") from None  # fmt: skip
        try:  # the previous holder may have removed the file between our open and flock: retry on a fresh one
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Remove the temporary files and folders mslesion left in ``folder`` when killed; returns them.

    Only names of this toolkit's own pattern (``.<name>.mslesion-XXXXXXXX.tmp...``,
    see :mod:`mslesion.fileio`) are touched. Call with the folder's lock held.
    """
    rx = re.compile(r"^\..+\.mslesion-[A-Za-z0-9_]{8}\.(?:tmp|old)(?:\..*)?$")
    removed = []
    for p in Path(folder).iterdir():
        if rx.match(p.name) and not p.is_symlink():
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def recover_swap(path: str | Path) -> str | None:
    """Finish what an interrupted :func:`output_dir` left beside ``path``; call with the lock held.

    A kill between the two renames of a swap leaves no folder at ``path``: the
    complete new folder (it carries the marker) is moved in, else the old one is
    restored. Every other temporary of this module for ``path`` is removed.
    Returns ``"completed"``, ``"restored"`` or None.
    """
    path = Path(path).resolve()
    if not path.parent.is_dir():
        return None
    rx = re.compile(_TEMP_RE.format(name=re.escape(path.name)))
    temps = [p for p in path.parent.iterdir() if rx.match(p.name) and p.is_dir() and not p.is_symlink()]
    done = None
    if not os.path.lexists(path):
        complete = [p for p in temps if p.name.endswith(".tmp") and read_marker(p)]
        stranded = [p / "old" for p in temps if p.name.endswith(".old") and (p / "old").is_dir()]
        if complete:
            newest = max(complete, key=lambda p: p.stat().st_mtime)
            os.replace(newest, path)
            temps.remove(newest)
            done = "completed"
        elif stranded:
            os.replace(stranded[0], path)
            done = "restored"
    for p in temps:
        shutil.rmtree(p, ignore_errors=True)
    return done


@contextmanager
def output_dir(
    path: str | Path,
    kind: str,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
    info: dict | None = None,
) -> Iterator[Path]:
    """Build output folder ``path`` of ``kind`` in a temporary folder beside it; swap it in when complete.

    The checks of :func:`check_output` run before anything is written, and again
    under the lock. On an exception nothing at ``path`` changes.
    """
    inputs = list(inputs)
    check_output(path, kind, overwrite=overwrite, inputs=inputs)
    path = Path(path).resolve()
    with locked(path):
        recover_swap(path)
        check_output(path, kind, overwrite=overwrite, inputs=inputs)
        with atomic_dir(path, replace=True) as tmp:
            yield tmp
            write_marker(tmp, kind, **(info or {}))


def claim_dir(
    path: str | Path,
    kind: str,
    *,
    known: Iterable[str],
    inputs: Iterable[str | Path] = (),
) -> Path:
    """Create (or take back) a folder that mslesion fills over time, e.g. a run folder; returns it.

    An existing folder must carry the ``kind`` marker and hold only names matching
    the regular expressions ``known``; an empty or missing one is created and
    marked. Take :func:`locked` around the writing itself.

    Raises:
        OutputError: the folder holds files mslesion did not write, or overlaps an input.
    """
    out = Path(path).resolve()
    _overlap(out, list(inputs))
    known = list(known)
    if os.path.lexists(out):
        if not out.is_dir():
            raise OutputError(f"{path}: exists and is not a folder; choose another output path")
        names = sorted(p.name for p in out.iterdir())
        marker = read_marker(out)
        if marker is None and names:
            raise OutputError(f"{path}: holds {len(names)} {'entry' if len(names) == 1 else 'entries'} mslesion did not write ({_examples(names)}); "
                              "choose a new or empty folder")  # fmt: skip
        if marker is not None and marker["kind"] != kind:
            raise OutputError(f"{path}: is an mslesion {marker['kind']}, not a {kind}; choose another folder")
        foreign = [n for n in names if n != MARKER and not _matches_allowed(n, known)]
        if foreign:
            raise OutputError(f"{path}: an mslesion {kind} folder that also holds files mslesion did not write "
                              f"({_examples(foreign)}); move them out first")  # fmt: skip
        if marker is not None:
            return out
    out.mkdir(parents=True, exist_ok=True)
    save_json(out / MARKER, {"kind": kind, "mslesion_version": __version__})
    return out
