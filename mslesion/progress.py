"""Live progress of long work: one line per epoch with the scores and an ETA for the run and for the whole job.

A notebook cell or CLI command that trains several runs makes one :class:`JobProgress`
(how many runs, how many epochs each) and hands it to each :func:`mslesion.train.training.train`;
each epoch then prints, e.g.::

    [run 2/6 unet_scratch] epoch 3/50  loss 0.412  dice 0.310  val_dice 0.280  41 s/epoch
        run ETA 32 min, job ETA 3 h 05 min

The job's ETA assumes the runs still to come take as long per epoch as those measured so far
(runs differ: it is a plan, not a promise). A first plan comes from a timed warm-up of a few
batches of the first run, before its first epoch ends (an epoch on a large cohort can take an
hour). Each estimate is compared with the platform's session limit (Kaggle: 12 h a session) and a warning printed
when the job would not fit; ``time_budget_minutes`` caps each run's training time instead
(:func:`budget_per_run`).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

#: Hours a notebook session may run, per platform (Kaggle: 12 h a session, 30 h a week of GPU;
#: the limit that bounded the backbone report's study, section 5.2.1). Colab's free tier ends sessions at ~12 h.
SESSION_HOURS = {"kaggle": 12.0, "colab": 12.0}
SHOWN = ("loss", "dice", "val_loss", "val_dice")
#: Batches timed for the plan printed before the first epoch ends (after two untimed ones).
WARMUP_BATCHES = 5


def format_duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3 h 05 min``."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def budget_per_run(time_budget_minutes: float | None, n_runs: int) -> float | None:
    """Training minutes each of ``n_runs`` runs may take so that the job fits ``time_budget_minutes``.

    A tenth of the budget is kept for what follows the fits (recalibration, evaluation, saving).
    """
    if time_budget_minutes is None:
        return None
    if time_budget_minutes <= 0 or n_runs < 1:
        raise ValueError(f"time budget {time_budget_minutes!r} min for {n_runs} runs: need a positive budget")
    return 0.9 * time_budget_minutes / n_runs


class JobProgress:
    """ETA over the runs of one job (a notebook cell, a CLI command)."""

    def __init__(self, n_runs: int, epochs: int, platform: str | None = None, write: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.perf_counter):  # fmt: skip
        self.n_runs, self.epochs = int(n_runs), int(epochs)
        self.platform = platform
        self.write = write or (lambda line: print(line, flush=True))
        self.clock = clock
        self.run_index = 0
        self.label = ""
        self.run_epochs = self.epochs
        self.epoch_seconds: list[float] = []  # every epoch measured in this job
        self.run_seconds: list[float] = []  # this run's epochs
        self.warned = False
        self.lines: list[str] = []

    def _say(self, line: str) -> None:
        self.lines.append(line)
        self.write(line)

    def start_run(self, label: str, epochs: int, detail: str = "") -> None:
        self.run_index += 1
        self.label, self.run_epochs, self.run_seconds = label, int(epochs), []
        self._say(f"[run {self.run_index}/{self.n_runs} {label}] {detail}".rstrip())

    def skip_run(self, why: str) -> None:
        self._say(f"[run {self.run_index}/{self.n_runs} {self.label}] {why}")

    def remaining_seconds(self, epoch_done: int, total: int | None = None) -> tuple[float, float]:
        """(this run, the whole job) seconds still to go after ``epoch_done`` epochs of this run."""
        total = self.run_epochs if total is None else total
        run_mean = sum(self.run_seconds) / len(self.run_seconds) if self.run_seconds else math.nan
        job_mean = sum(self.epoch_seconds) / len(self.epoch_seconds) if self.epoch_seconds else math.nan
        return self._plan(total - epoch_done, run_mean, job_mean)

    def _plan(self, epochs_to_go: int, run_epoch: float, job_epoch: float) -> tuple[float, float]:
        """(this run, the whole job) seconds: this run's epochs to go, then the later runs' epochs."""
        run_left = epochs_to_go * run_epoch
        return run_left, run_left + max(0, self.n_runs - self.run_index) * self.epochs * job_epoch

    def _report(self, what: str, job_left: float) -> str:
        line = f"[run {self.run_index}/{self.n_runs} {self.label}] {what}"
        self._say(line)
        self._check_session_limit(job_left)
        return line

    def epoch_end(self, epoch: int, total: int, seconds: float, logs: dict) -> str:
        """Record epoch ``epoch`` (0-based) of ``total``; prints and returns its line."""
        self.run_seconds.append(seconds)
        self.epoch_seconds.append(seconds)
        run_left, job_left = self.remaining_seconds(epoch + 1, total)
        scores = "  ".join(f"{k} {float(logs[k]):.3f}" for k in SHOWN if k in logs)
        return self._report(f"epoch {epoch + 1}/{total}  {scores}  {format_duration(seconds)}/epoch  "
                            f"run ETA {format_duration(run_left)}, job ETA {format_duration(job_left)}", job_left)

    def warm_up(self, seconds_per_batch: float, steps_per_epoch: int, total: int) -> str | None:
        """The time plan from the first timed batches, before the first epoch ends (first run only).

        Returns the printed line, or None when epochs have already been measured (their ETA is better).
        """
        if self.epoch_seconds:
            return None
        epoch = seconds_per_batch * steps_per_epoch
        run_left, job_left = self._plan(total, epoch, epoch)
        return self._report(f"warm-up: {seconds_per_batch:.2f} s/batch -> about {format_duration(epoch)}/epoch, "
                            f"run {format_duration(run_left)}, job {format_duration(job_left)} "
                            "(validation not included)", job_left)  # fmt: skip

    def _check_session_limit(self, job_left: float) -> None:
        limit = SESSION_HOURS.get(self.platform or "")
        if limit and not self.warned and job_left > limit * 3600:
            self.warned = True
            self._say(f"WARNING: at this pace the job needs about {format_duration(job_left)} more, over the "
                      f"{limit:.0f} h a {self.platform} session allows; set TIME_BUDGET (minutes) or fewer EPOCHS/"
                      "runs. A re-run continues where the session stopped.")  # fmt: skip

    def keras_callback(self):
        """A Keras callback feeding :meth:`epoch_end` (one per run: make it after :meth:`start_run`)."""
        import keras

        job = self

        class _Progress(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.total = int(self.params.get("epochs") or job.run_epochs)

            def on_epoch_begin(self, epoch, logs=None):
                self.start = job.clock()
                self.batch_start = None

            def on_train_batch_end(self, batch, logs=None):
                # batches 0-1 include tracing and first reads; time the next WARMUP_BATCHES
                if job.epoch_seconds or batch < 1:
                    return
                steps = int(self.params.get("steps") or 0)
                if batch == 1:
                    self.batch_start = job.clock()
                elif batch == 1 + WARMUP_BATCHES and self.batch_start is not None and steps > batch + 1:
                    job.warm_up((job.clock() - self.batch_start) / WARMUP_BATCHES, steps, self.total)

            def on_epoch_end(self, epoch, logs=None):
                job.epoch_end(epoch, self.total, job.clock() - self.start, dict(logs or {}))

        return _Progress()


def fit_verbosity(stream=None) -> int:
    """Keras ``verbose`` for the CLI: a live progress bar on a terminal (1), one line per epoch in a log file (2)."""
    stream = stream or sys.stdout
    return 1 if getattr(stream, "isatty", lambda: False)() else 2
