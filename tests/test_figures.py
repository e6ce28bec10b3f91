"""Report figures: each builds from tiny synthetic inputs, labels its axes and saves deterministically."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from mslesion.report import figures
from mslesion.report.curves import plot_accuracy_loss, plot_lesion_brackets, plot_lr_search, plot_metric_curves
from mslesion.report.figures import (
    plot_attention_maps,
    plot_image_grid,
    plot_orthogonal_views,
    plot_prediction_examples,
)
from mslesion.report.plotting import OVERLAY_COLOURS, SOURCES_KEY, overlay_rgb, save_figure

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


# the model names of the demo's report: the longest ran into the neighbouring panel's title
LONG_NAMES = ["UNet with VGG Backbone (no ImageNet weights)", "UNet++ with VGG Backbone (no ImageNet weights)",
              "Attention UNet with VGG Backbone (no ImageNet weights)", "UNet from scratch", "R2 UNet from scratch",
              "Attention UNet from scratch"]  # fmt: skip


def rendered(fig: Figure):
    """Lay out and draw ``fig`` once, as savefig does; returns the renderer for window extents."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # Figure(...) has no drawing canvas of its own
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def overlapping_titles(fig: Figure) -> list[tuple[str, str]]:
    """Pairs of axes titles (and the suptitle) whose drawn bounding boxes overlap."""
    renderer = rendered(fig)
    texts = [ax.title for ax in fig.axes if ax.get_title()] + ([fig._suptitle] if fig._suptitle else [])
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    return [(a, b) for i, (a, box) in enumerate(boxes) for b, other in boxes[i + 1 :] if box.overlaps(other)]


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


def test_plot_metric_curves_long_model_names_do_not_overlap():
    fig = plot_metric_curves({name: history() for name in LONG_NAMES})
    assert overlapping_titles(fig) == []
    assert [ax.get_title().replace("\n", " ") for ax in fig.axes] == LONG_NAMES  # wrapped, not cut


def test_plot_metric_curves_share_one_y_axis_by_default():
    flat = history().assign(dice=0.01, val_dice=0.002)  # a model that did not learn, next to one that did
    learned = history().assign(dice=np.linspace(0.1, 0.9, 5), val_dice=np.linspace(0.05, 0.8, 5))
    histories = {"flat": flat, "learned": learned}
    shared = plot_metric_curves(histories)
    rendered(shared)
    assert shared.axes[0].get_ylim() == shared.axes[1].get_ylim()
    assert shared.axes[0].get_ylim()[1] > 0.8  # the flat model is drawn on the learned one's scale
    assert shared.axes[1].get_yticklabels()[0].get_visible()  # every panel keeps its tick labels
    separate = plot_metric_curves(histories, sharey=False)
    rendered(separate)
    assert separate.axes[0].get_ylim()[1] < 0.1 < separate.axes[1].get_ylim()[1]


def test_plot_accuracy_loss_long_model_names_do_not_overlap():
    fig = plot_accuracy_loss({name: history() for name in LONG_NAMES[:3]})
    assert overlapping_titles(fig) == []


@pytest.mark.parametrize("lowest, floor", [(0.9973, 0.95), (0.95, 0.95), (0.9499, 0.9), (0.47, 0.45), (1.0, 0.95)])
def test_accuracy_axis_starts_at_the_lowest_accuracy_rounded_down(lowest, floor):
    h = history().assign(accuracy=1.0, val_accuracy=np.linspace(lowest, 1.0, 5))
    fig = drawn(plot_accuracy_loss({"unet": h}))
    accuracy = fig.axes[0]
    assert accuracy.get_ylim()[0] == pytest.approx(floor)
    assert accuracy.get_ylim()[1] >= 1.0  # points at exactly 1 stay visible
    assert f"axis from {floor:g}" in accuracy.get_title()
    assert "axis from" not in fig.axes[1].get_title()  # the loss axis is untouched


def test_accuracy_axis_floor_can_be_fixed_and_is_absent_without_accuracy():
    no_accuracy = history(drop=("accuracy", "val_accuracy"))
    fig = drawn(plot_accuracy_loss({"a": history(), "b": no_accuracy}, accuracy_floor=0.8))
    assert fig.axes[0].get_ylim()[0] == pytest.approx(0.8) and "axis from 0.8" in fig.axes[0].get_title()
    assert "axis from" not in fig.axes[2].get_title()
    assert "axis from" not in drawn(plot_accuracy_loss({"b": no_accuracy})).axes[0].get_title()


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
    # a non-empty mask adds its fill and its outline over the slice; None or an empty mask adds nothing
    assert [len(ax.images) for ax in fig.axes] == ([3, 1, 1, 3] if with_masks else [1, 1, 1, 1])


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


def test_plot_prediction_examples_row_labels_stay_within_their_row():
    image, truth, pred = slice_and_masks()
    examples = {name: [dict(image=image, truth=truth, pred=pred, dice=0.5, label=label, title="patient 3 slice 12")
                       for label in ("good", "average", "bad")] for name in LONG_NAMES}  # fmt: skip
    fig = plot_prediction_examples(examples)
    renderer = rendered(fig)
    first = fig.axes[::3]  # the first panel of each row carries the row label
    assert [ax.get_ylabel().replace("\n", " ") for ax in first] == LONG_NAMES  # wrapped, not cut
    for ax in first:
        label, panel = ax.yaxis.label.get_window_extent(renderer), ax.get_window_extent(renderer)
        assert panel.y0 - 1 <= label.y0 and label.y1 <= panel.y1 + 1, ax.get_ylabel()


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


def bracket_rows(recall: list[float], precision: list[float]) -> pd.DataFrame:
    """Two models x two brackets, the values in (model, bracket) order."""
    keys = [(m, b, n) for m in ("unet", "att") for b, n in (("[0, 10)", 7), ("[10, 400)", 8))]
    columns = ["model", "bracket", "lesion_recall", "lesion_precision", "n_true_lesions"]
    return pd.DataFrame([(m, b, r, p, n) for (m, b, n), r, p in zip(keys, recall, precision)], columns=columns)


def test_plot_lesion_brackets_marks_zero_bars():
    fig = drawn(plot_lesion_brackets(bracket_rows([0.0, 0.5, 0.8, 0.0], [1.0, np.nan, 0.0, 1.0])))
    recall, precision = fig.axes
    zero_x = sorted(t.get_position()[0] for t in recall.texts if t.get_text() == "0")
    bars = {round(bar.get_x() + bar.get_width() / 2, 6): bar.get_height() for bar in recall.patches}
    assert len(zero_x) == 2 and all(bars[round(x, 6)] == 0 for x in zero_x)  # a "0" at each zero bar
    assert sum(len(line.get_xdata()) == 2 and set(line.get_ydata()) == {0} for line in recall.lines) == 2  # and a stub
    assert sorted(t.get_text() for t in precision.texts) == ["0", "n/a"]  # zero and undefined told apart


def test_plot_lesion_brackets_legend_is_outside_the_axes():
    rows = bracket_rows([0.3, 0.5, 0.8, 0.9], [1.0, 0.5, 0.6, 1.0]).replace({"unet": LONG_NAMES[2]})
    fig = plot_lesion_brackets(rows)
    renderer = rendered(fig)
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [LONG_NAMES[2], "att"]
    box = legend.get_window_extent(renderer)
    assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in fig.axes)


def test_plot_lesion_brackets_rejects_per_patient_rows():
    rows = pd.DataFrame(dict(model=["a", "a"], bracket=["[0, 10)"] * 2, lesion_recall=[0.1, 0.2],
                             lesion_precision=[0.1, 0.2], n_true_lesions=[1, 2]))  # fmt: skip
    with pytest.raises(ValueError, match="one row per"):
        plot_lesion_brackets(rows)


def test_plot_attention_maps_scales_each_panel_to_its_own_range():
    image, truth, _ = slice_and_masks()
    maps = {"deep": 0.97 + 0.03 * RNG.uniform(0, 1, (8, 8)), "shallow": RNG.uniform(0.4, 0.8, (32, 32)),
            "flat": np.full((16, 16), 0.5)}  # fmt: skip
    fig = plot_attention_maps(image, maps, truth, title="patient 3, slice 12")
    panels = fig.axes[1:4]
    limits = [ax.images[0].get_clim() for ax in panels]  # images[0]: the map, [1]: the truth outline
    assert limits[0] == pytest.approx((maps["deep"].min(), maps["deep"].max()))
    assert limits[1] == pytest.approx((maps["shallow"].min(), maps["shallow"].max()))
    assert len({round(low, 6) for low, _ in limits}) == 3  # no shared 0-1 scale
    assert panels[0].get_title().startswith("deep (8x8)\nrange 0.97")
    assert panels[1].get_title().endswith(f"range {maps['shallow'].min():.2f}-{maps['shallow'].max():.2f}")
    assert panels[2].get_title().endswith("constant 0.50")  # a uniform map says so instead of a range
    assert [t.get_text() for t in fig.axes[-1].get_yticklabels()] == ["panel min", "panel max"]
    assert overlapping_titles(fig) == []


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
