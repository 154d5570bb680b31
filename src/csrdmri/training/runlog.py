"""A run's step log, ``log.csv`` (one row per step), and its picture, ``loss.png``."""

from __future__ import annotations

import csv
from pathlib import Path
from types import TracebackType

import numpy as np
from matplotlib.figure import Figure

from csrdmri.io.nifti import atomic_path

COLUMNS = ("epoch", "step", "loss", "lr", "seconds")


class StepLog:
    """``log.csv``, opened for the steps of epochs ``start_epoch`` on (a context manager).

    A new run starts a new log; a resumed one keeps the rows of the epochs before
    ``start_epoch`` (a run killed in mid-epoch logged steps that its resumption repeats).
    """

    def __init__(self, path: Path, resume: bool, start_epoch: int) -> None:
        new = not path.exists() or not resume
        if not new:
            _keep_rows(path, start_epoch)
        self._file = open(path, "w" if new else "a", newline="")
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(COLUMNS)

    def row(self, epoch: int, step: int, loss: float, lr: float, seconds: float) -> None:
        """Log one step: its mean loss, the learning rate it used and its duration (s)."""
        self._writer.writerow([epoch, step, f"{loss:.6g}", f"{lr:.3g}", f"{seconds:.3f}"])

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> StepLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def _keep_rows(path: Path, epochs: int) -> None:
    """Drop the rows of epochs ≥ ``epochs`` from a log (atomically)."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    kept = rows[:1] + [row for row in rows[1:] if row and row[0].isdigit() and int(row[0]) < epochs]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        csv.writer(handle).writerows(kept)


def plot_losses(log: Path, out: Path) -> None:
    """Plot the loss of every step of ``log`` and its running mean (log scale) into ``out``."""
    with open(log) as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return
    steps = np.array([int(r["step"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    window = max(1, len(loss) // 50)
    smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.plot(steps, loss, alpha=0.3, label="loss")
    ax.plot(steps[window - 1 :], smooth, label=f"mean of {window}")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100)
