"""Report figures: each builds from tiny synthetic inputs, labels its axes and saves deterministically."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from mslesion import figures
from mslesion.figures import (
    OVERLAY_COLOURS,
    SOURCES_KEY,
    overlay_rgb,
    plot_accuracy_loss,
    plot_image_grid,
    plot_lesion_brackets,
    plot_lr_search,
    plot_metric_curves,
    plot_orthogonal_views,
    plot_prediction_examples,
    save_figure,
)

RNG = np.random.default_rng(0)
COLUMNS = ["accuracy", "dice", "iou", "loss", "val_accuracy", "val_dice", "val_iou", "val_loss"]


def history(epochs: int = 5, drop: tuple[str, ...] = ()) -> pd.DataFrame:
    frame = pd.DataFrame(RNG.uniform(0, 1, (epochs, len(COLUMNS))), columns=COLUMNS)
    frame.insert(0, "epoch", np.arange(epochs))
    return frame.drop(columns=list(drop))


def slice_and_masks(size: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image = RNG.normal(0, 1, (size, size))
    truth = np.zeros((size, size), bool)
    truth[10:16, 10:16] = True
    pred = np.zeros((size, size), bool)
    pred[12:18, 12:18] = True
    return image, truth, pred


def drawn(fig: Figure) -> Figure:
    """Render once, so layout and drawing errors surface too."""
    assert isinstance(fig, Figure)
    fig.savefig(io.BytesIO(), format="png")
    return fig


def labelled(ax) -> bool:
    return bool(ax.get_xlabel() and ax.get_ylabel() and ax.get_title())


@pytest.fixture(autouse=True)
def no_pyplot_figures():
    import matplotlib.pyplot as plt

    yield
    assert plt.get_fignums() == []


@pytest.mark.parametrize("n_models, metric", [(1, "dice"), (4, "iou"), (6, "loss")])
def test_plot_metric_curves_one_panel_per_model(n_models, metric):
    histories = {f"model {i}": history() for i in range(n_models)}
    fig = drawn(plot_metric_curves(histories, metric=metric))
    assert isinstance(fig, Figure) and len(fig.axes) == n_models
    assert all(labelled(ax) and ax.get_xlabel() == "epoch" for ax in fig.axes)
    assert [ax.get_title() for ax in fig.axes] == list(histories)
    x = fig.axes[0].lines[0].get_xdata()
    np.testing.assert_array_equal(x, np.arange(1, 6))  # CSVLogger's 0-based epochs shown 1-based
    assert len(fig.axes[0].lines) == 2


def test_plot_metric_curves_skips_missing_columns():
    fig = drawn(plot_metric_curves({"a": history(drop=("val_dice",)), "b": history(drop=("dice", "val_dice"))}))
    assert [len(ax.lines) for ax in fig.axes] == [1, 0]
    assert fig.axes[0].get_legend() is not None


def test_plot_accuracy_loss_row_per_model():
    fig = drawn(plot_accuracy_loss({"unet": history(), "att": history(drop=("val_loss",))}))
    assert len(fig.axes) == 4 and all(labelled(ax) for ax in fig.axes)
    assert [len(ax.lines) for ax in fig.axes] == [2, 2, 2, 1]
    assert "accuracy" in fig.axes[0].get_title() and "loss" in fig.axes[1].get_title()


@pytest.mark.parametrize("with_masks", [True, False])
def test_plot_image_grid(with_masks):
    image, truth, _ = slice_and_masks()
    images = [image * 100 + 5, image, np.zeros_like(image), image]  # any range, one flat image
    masks = [truth, None, np.zeros_like(truth), truth] if with_masks else None
    fig = drawn(plot_image_grid(images, masks, titles=[f"slice {i}" for i in range(4)], ncols=3))
    assert len(fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes] == [f"slice {i}" for i in range(4)]


def test_plot_image_grid_rejects_mismatched_lengths():
    image, truth, _ = slice_and_masks()
    with pytest.raises(ValueError):
        plot_image_grid([image, image], [truth], ["a", "b"])


def test_overlay_rgb_colours_exactly():
    image, truth, pred = slice_and_masks()
    rgb = overlay_rgb(image, truth, pred)
    assert rgb.shape == (32, 32, 3) and rgb.min() >= 0 and rgb.max() <= 1
    np.testing.assert_array_equal(rgb[13, 13], OVERLAY_COLOURS["true positive"])
    np.testing.assert_array_equal(rgb[17, 17], OVERLAY_COLOURS["false positive"])
    np.testing.assert_array_equal(rgb[10, 10], OVERLAY_COLOURS["false negative"])
    assert OVERLAY_COLOURS["true positive"] == (0, 1, 0) and OVERLAY_COLOURS["false negative"] == (0, 0, 1)
    background = rgb[~(truth | pred)]
    np.testing.assert_array_equal(background[:, 0], background[:, 1])
    np.testing.assert_array_equal(background[:, 1], background[:, 2])
    assert background.std() > 0.1  # the anatomy is still visible


def test_overlay_rgb_rejects_shape_mismatch():
    image, truth, pred = slice_and_masks()
    with pytest.raises(ValueError):
        overlay_rgb(image, truth[:-1], pred)


def test_plot_prediction_examples():
    image, truth, pred = slice_and_masks()
    example = dict(image=image, truth=truth, pred=pred, dice=0.5, title="patient 3 slice 12")
    examples = {
        "unet": [{**example, "label": label} for label in ("good", "average", "bad")],
        "att_unet": [{**example, "label": "good", "dice": float("nan")}],
    }
    fig = drawn(plot_prediction_examples(examples))
    assert len(fig.axes) == 4
    assert fig.axes[0].get_title() == "good: Dice 0.50" and "undefined" in fig.axes[3].get_title()
    assert all(ax.get_xlabel() == "patient 3 slice 12" for ax in fig.axes)
    assert fig.axes[0].get_ylabel() == "unet" and fig.axes[3].get_ylabel() == "att_unet"
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == list(OVERLAY_COLOURS)


@pytest.mark.parametrize("with_mask", [True, False])
def test_plot_orthogonal_views(with_mask):
    volume = RNG.normal(0, 1, (10, 24, 20))
    mask = np.zeros(volume.shape, bool)
    mask[3:5, 8:12, 14:17] = True
    fig = drawn(plot_orthogonal_views(volume, mask if with_mask else None, spacing_zhw_mm=(4.0, 1.0, 1.2), title="x"))
    assert len(fig.axes) == 3 and all(labelled(ax) for ax in fig.axes)
    axial, coronal, sagittal = fig.axes
    assert coronal.get_ylim()[1] > coronal.get_ylim()[0]  # superior at the top
    assert sagittal.get_ylim() == pytest.approx((0, 40))  # 10 slices x 4 mm
    assert axial.get_ylim()[0] > axial.get_ylim()[1]  # anterior (row 0) at the top
    expected = "(z=3)" if with_mask else "(z=5)"  # nearest lesion voxel to the centre of mass, else centre
    assert expected in axial.get_title()


def test_plot_orthogonal_views_at_index():
    volume = RNG.normal(0, 1, (6, 8, 8))
    fig = drawn(plot_orthogonal_views(volume, None, index=(1, 2, 3)))
    assert [ax.get_title() for ax in fig.axes] == ["axial (z=1)", "coronal (row=2)", "sagittal (column=3)"]


@pytest.mark.parametrize("with_curves", [True, False])
def test_plot_lr_search(with_curves):
    table = pd.DataFrame(  # as tuning.csv reads back: 1-based best_epoch, blank when unknown
        dict(trial=["t0", "t1", "t2", "t3"], learning_rate=[1e-4, 1e-3, 1e-2, 1e-1],
             best_val_dice=[0.4, 0.6, np.nan, 0.1], best_epoch=[3, 5, np.nan, np.nan], epochs=[5, 5, 5, 5])
    )  # fmt: skip
    curves = {"t0": [0.1, 0.3, 0.4], "t1": [0.2, 0.6]} if with_curves else None
    fig = drawn(plot_lr_search(table, curves))
    assert len(fig.axes) == (2 if with_curves else 1) and all(labelled(ax) for ax in fig.axes)
    assert fig.axes[0].get_xscale() == "log"
    texts = [t.get_text() for t in fig.axes[0].texts]  # the nan trial is not labelled
    assert texts == ["t0 (epoch 3/5)", "t1 (epoch 5/5)", "t3"]


def test_plot_lesion_brackets():
    rows = pd.DataFrame(
        [(m, b, r, p, n) for m in ("unet", "att") for b, r, p, n in
         [("3-10 vox", 0.3, 0.5, 12), ("11-50 vox", 0.7, np.nan, 5), ("> 50 vox", 0.9, 0.8, 2)]],
        columns=["model", "bracket", "lesion_recall", "lesion_precision", "n_true_lesions"],
    )  # fmt: skip
    fig = drawn(plot_lesion_brackets(rows))
    assert len(fig.axes) == 2 and all(labelled(ax) for ax in fig.axes)
    recall = fig.axes[0]
    assert len(recall.patches) == 6
    assert [t.get_text() for t in recall.get_xticklabels()] == ["3-10 vox\nn=12", "11-50 vox\nn=5", "> 50 vox\nn=2"]
    assert [t.get_text() for t in fig.axes[1].texts] == ["n/a", "n/a"]  # undefined precision is marked, not 0


def test_plot_lesion_brackets_rejects_per_patient_rows():
    rows = pd.DataFrame(dict(model=["a", "a"], bracket=["[0, 10)"] * 2, lesion_recall=[0.1, 0.2],
                             lesion_precision=[0.1, 0.2], n_true_lesions=[1, 2]))  # fmt: skip
    with pytest.raises(ValueError, match="one row per"):
        plot_lesion_brackets(rows)


def test_save_figure_deterministic_with_sources(tmp_path):
    sources = {"runs": ["runs/msseg/unet/fold_0"], "threshold": np.float32(0.5)}
    fig = drawn(plot_metric_curves({"unet": history()}))
    first = save_figure(fig, tmp_path / "sub" / "curves.png", sources)
    data = first.read_bytes()
    assert first == tmp_path / "sub" / "curves.png" and len(data) > 5000
    assert save_figure(fig, tmp_path / "again.png", sources).read_bytes() == data
    with Image.open(first) as png:
        assert png.format == "PNG"
        assert json.loads(png.text[SOURCES_KEY]) == {"runs": ["runs/msseg/unet/fold_0"], "threshold": 0.5}
        assert "Software" not in png.text
    assert sorted(p.name for p in first.parent.iterdir()) == ["curves.png"]  # no temp file left


def test_save_figure_without_sources_has_no_metadata(tmp_path):
    path = save_figure(plot_image_grid([np.ones((4, 4))], None, ["flat"]), tmp_path / "grid.png")
    with Image.open(path) as png:
        assert png.text == {}


def test_public_api():
    assert all(callable(getattr(figures, name)) or name.isupper() for name in figures.__all__)
