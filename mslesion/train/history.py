"""A run's ``history.csv``: reading it, the epoch study, and rewriting it on resume."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from mslesion.fileio import save_csv
from mslesion.folders import read_history
from mslesion.paths import HISTORY

__all__ = ["read_history", "epoch_study", "history_before", "write_history"]


def epoch_study(run_dir: str | Path, every: int = 25, metric: str = "val_dice") -> list[dict]:
    """The backbone report's section 5.2.1 from one long run: ``metric`` at epochs every, 2*every, ... (1-based)."""
    history = read_history(run_dir)
    rows = []
    for epoch in range(every, len(history) + 1, every):
        row = history.iloc[epoch - 1]
        rows.append({"epoch": epoch, metric: float(row[metric]), "best_so_far": float(history[metric][:epoch].max())})
    return rows


def history_before(run: Path, epoch: int) -> tuple[list[str], list[dict]]:
    """``history.csv``'s header and its complete rows of the epochs before ``epoch`` (a resume redoes the rest)."""
    path = run / HISTORY
    if not path.is_file():
        return [], []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        rows: dict[int, dict] = {}
        for row in reader:
            try:
                e = int(row.get("epoch") or "")
            except ValueError:
                continue
            if e < epoch and None not in row and None not in row.values():  # not a row cut short or run on
                rows[e] = row
    return header, [rows[e] for e in sorted(rows)]


def write_history(run: Path, header: list[str], rows: list[dict]) -> None:
    path = run / HISTORY
    if not header:
        path.unlink(missing_ok=True)
        return
    # Keras's CSVLogger spells a missing value NA; the rows are the strings read back, written as they were
    save_csv(path, rows, columns=header, float_format=None, na_rep="NA")


def csv_value(value):
    if isinstance(value, (bool, int, float, np.number)) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return float(value)
    return str(value)
