"""TensorBoard logs of a run: epoch scalars with the learning rate, validation images, owned like the run's files."""

import numpy as np
import pytest

from mslesion.outputs import OutputError
from mslesion.train.tensorboard_logs import pick_slices


def _tags(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from mslesion.data.quick import quick_synthetic_dataset

    root = tmp_path_factory.mktemp("tb")
    return quick_synthetic_dataset(root / "ds", 3, size=32, shape=(64, 64, 8), spacing_mm=(3.6, 3.6, 10.0),
                                   selection="all", test_fraction=0.0, val_fraction=0.34).out_dir  # fmt: skip


def _config(dataset, run, **extra):
    return {"dataset": str(dataset), "model": "kuc.unet", "model_params": {"filter_num": [4, 8]}, "batch_size": 4,
            "epochs": 2, "run_dir": str(run), **extra}  # fmt: skip


def test_a_run_logs_epoch_scalars_learning_rate_and_validation_images(dataset, tmp_path):
    from mslesion.train.training import train

    run = train(_config(dataset, tmp_path / "run"), verbose=0)
    train_log = _tags(run / "tensorboard" / "train")
    scalars = set(train_log.Tags()["scalars"]) | set(train_log.Tags()["tensors"])
    assert {"epoch_loss", "epoch_learning_rate", "epoch_dice"} <= scalars
    val_log = _tags(run / "tensorboard" / "validation")
    assert "epoch_dice" in set(val_log.Tags()["scalars"]) | set(val_log.Tags()["tensors"])
    images = _tags(run / "tensorboard" / "images")
    tag = "validation: image | truth | prediction"
    events = images.Tensors(tag)
    assert [e.step for e in events] == [0, 1]  # one strip set per epoch
    shown = np.asarray(events[-1].tensor_proto.string_val)
    assert len(shown) == 2 + 3  # width, height, then 3 encoded PNG strips
    assert shown[0] == b"96" and shown[1] == b"32"  # image | truth | prediction side by side


def test_overwrite_removes_the_logs_but_a_foreign_file_among_them_stops_the_run(dataset, tmp_path):
    from mslesion.train.training import train

    run = train(_config(dataset, tmp_path / "run", epochs=1, tensorboard=True), verbose=0)
    old = sorted((run / "tensorboard" / "train").iterdir())
    train(_config(dataset, run, epochs=1), verbose=0, overwrite=True)
    assert set(old).isdisjoint((run / "tensorboard" / "train").iterdir())  # fresh logs, not appended
    (run / "tensorboard" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="notes.txt"):
        train(_config(dataset, run, epochs=1), verbose=0, overwrite=True)
    assert (run / "tensorboard" / "notes.txt").read_text() == "mine"


def test_no_logs_when_turned_off_and_the_slices_shown_have_the_most_lesion(dataset, tmp_path):
    from mslesion.train.training import train

    run = train(_config(dataset, tmp_path / "quiet", epochs=1, tensorboard=False), verbose=0)
    assert not (run / "tensorboard").exists()
    masks = np.zeros((5, 4, 4, 1))
    masks[1, :2] = 1
    masks[3] = 1
    masks[4, 0, 0] = 1
    assert pick_slices(np.zeros_like(masks), masks, 3).tolist() == [3, 1, 4]


def test_search_logs_are_removed_only_when_they_hold_nothing_but_event_files(tmp_path):
    from mslesion.train.tensorboard_logs import remove_if_only_events

    logs = tmp_path / "tensorboard"
    (logs / "00" / "execution0" / "train").mkdir(parents=True)
    (logs / "00" / "execution0" / "train" / "events.out.tfevents.1.host").write_bytes(b"x")
    (logs / "01" / "notes.txt").parent.mkdir()
    (logs / "01" / "notes.txt").write_text("mine")
    assert not remove_if_only_events(logs) and (logs / "01" / "notes.txt").is_file()
    (logs / "01" / "notes.txt").unlink()
    assert remove_if_only_events(logs) and not logs.exists()
    assert not remove_if_only_events(logs)  # nothing there
