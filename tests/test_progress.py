"""mslesion.progress: per-epoch lines with the run's and the job's ETA, the session-limit warning, the time budget."""

import io
import json
from pathlib import Path

import pytest

from mslesion.progress import JobProgress, budget_per_run, fit_verbosity, format_duration


def test_format_duration():
    assert [format_duration(s) for s in (5, 89, 600, 3 * 3600 + 5 * 60, float("nan"))] == [
        "5 s", "89 s", "10 min", "3 h 05 min", "?"]  # fmt: skip


def test_eta_of_the_run_and_of_the_job_from_the_epochs_measured():
    lines = []
    job = JobProgress(n_runs=2, epochs=3, write=lines.append)
    job.start_run("unet", 3, "kuc.unet -> runs/x")
    line = job.epoch_end(0, 3, 10.0, {"loss": 0.5, "dice": 0.25, "val_dice": 0.125, "seconds": 10.0})
    # this run: 2 more epochs at 10 s; then one more run of 3 epochs at the job's 10 s an epoch
    assert "[run 1/2 unet] epoch 1/3" in line and "loss 0.500  dice 0.250  val_dice 0.125" in line
    assert "run ETA 20 s, job ETA 50 s" in line
    job.epoch_end(1, 3, 20.0, {})
    assert job.remaining_seconds(2) == (15.0, 15.0 + 3 * 15.0)
    job.start_run("attention", 3)
    job.epoch_end(0, 3, 40.0, {})
    assert job.remaining_seconds(1) == (80.0, 80.0)  # the last run: nothing after it
    assert lines[0] == "[run 1/2 unet] kuc.unet -> runs/x" and len(lines) == 5


def test_a_job_over_the_session_limit_is_a_warning_once():
    lines = []
    job = JobProgress(n_runs=6, epochs=50, platform="kaggle", write=lines.append)
    job.start_run("a", 50)
    job.epoch_end(0, 50, 200.0, {})  # 299 epochs left at 200 s: ~16.6 h
    job.epoch_end(1, 50, 200.0, {})
    warnings = [line for line in lines if line.startswith("WARNING")]
    assert len(warnings) == 1 and "12 h a kaggle session" in warnings[0] and "TIME_BUDGET" in warnings[0]
    quiet = JobProgress(n_runs=6, epochs=50, platform="local", write=lines.append)
    quiet.start_run("a", 50)
    quiet.epoch_end(0, 50, 200.0, {})
    assert len([line for line in lines if line.startswith("WARNING")]) == 1  # no limit off Kaggle/Colab


def test_warm_up_plans_the_job_and_warns_before_the_first_epoch_ends():
    lines = []
    job = JobProgress(n_runs=6, epochs=50, platform="kaggle", write=lines.append)
    job.start_run("a", 50)
    # 2 s a batch, 100 batches an epoch: 200 s an epoch, 50 epochs a run, 6 runs = 60,000 s (16.7 h)
    line = job.warm_up(2.0, 100, 50)
    assert "2.00 s/batch" in line and "3 min/epoch" in line and "run 2 h 47 min" in line and "job 16 h 40 min" in line
    assert lines[-1].startswith("WARNING") and "12 h a kaggle session" in lines[-1]
    job.epoch_end(0, 50, 200.0, {})
    assert job.warm_up(2.0, 100, 50) is None  # measured epochs give the better ETA
    assert len([x for x in lines if x.startswith("WARNING")]) == 1


def test_the_keras_callback_prints_the_warm_up_plan_in_a_real_fit():
    import keras
    import numpy as np

    lines = []
    ticks = iter(range(1000))
    job = JobProgress(n_runs=1, epochs=2, write=lines.append, clock=lambda: float(next(ticks)))
    job.start_run("tiny", 2)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x = np.zeros((40, 4), np.float32)
    model.fit(x, x[:, :1], batch_size=2, epochs=2, verbose=0, callbacks=[job.keras_callback()])
    plans = [x for x in lines if "warm-up" in x]
    assert len(plans) == 1 and "/epoch" in plans[0]  # once, in the first epoch only
    assert sum("epoch 2/2" in x for x in lines) == 1


def test_time_budget_split_over_the_runs():
    assert budget_per_run(None, 6) is None
    assert budget_per_run(60, 6) == pytest.approx(9.0)  # a tenth kept for evaluation and saving
    with pytest.raises(ValueError, match="positive budget"):
        budget_per_run(0, 6)


def test_progress_bar_on_a_terminal_lines_in_a_log_file():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert fit_verbosity(Tty()) == 1 and fit_verbosity(io.StringIO()) == 2


@pytest.mark.slow
def test_training_prints_a_line_per_epoch_and_skips_finished_runs(tmp_path, capsys):
    from mslesion.data.prep import PrepConfig, prepare_dataset
    from mslesion.data.synthetic import generate_cohort
    from mslesion.study.experiments import train_report_models

    generate_cohort(tmp_path / "raw", 4, seed=0, shape=(64, 64, 8), spacing_mm=(3.6, 3.6, 10.0))
    prepare_dataset(tmp_path / "raw", tmp_path / "ds", PrepConfig(size=(32, 32), selection="brain",
                    split="train_val_test", test_fraction=0.25, val_fraction=0.25), progress=False)  # fmt: skip
    kwargs = {"quick": True, "weights": None, "batch_size": 4, "progress": True, "time_budget_minutes": 30}
    runs = train_report_models(tmp_path / "ds", tmp_path / "runs", 2, ["unet_scratch"], **kwargs)
    out = capsys.readouterr().out
    assert "at most 27.0 min of training each" in out
    assert "[run 1/1 unet_scratch] epoch 1/2" in out and "[run 1/1 unet_scratch] epoch 2/2" in out
    assert "val_dice" in out and "job ETA" in out
    assert json.loads((Path(runs[0]) / "config.json").read_text())["max_minutes"] == pytest.approx(27.0)
    train_report_models(tmp_path / "ds", tmp_path / "runs", 2, ["unet_scratch"], **kwargs)
    assert "already finished: skipped" in capsys.readouterr().out
