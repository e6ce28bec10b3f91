"""Run folders -> ``results/``: every table (CSV, Markdown, LaTeX) and figure (PNG) (``mslesion report``).

Layout written::

    <out>/tables/<name>.csv|.md|.tex    one per table, Markdown with caption and sources
    <out>/figures/<name>.png            PNG text chunk "Source" = JSON of its inputs
    <out>/report.md                     every table and figure in report order
    <out>/provenance.json               output file -> the runs / data it came from

Regenerating from the same runs writes identical tables (rows sorted, fixed
number formats, no dates). Paths are recorded as given (keep them relative
for a repository's committed results).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mslesion.fileio import load_json, save_csv, save_json, save_text
from mslesion.folders import read_history
from mslesion.outputs import output_dir
from mslesion.paths import PREP_CONFIG
from mslesion.report import curves, plotting
from mslesion.report import eval_tables as et
from mslesion.report import figures as fig
from mslesion.report import tables as rt

__all__ = ["ReportConfig", "build_report", "write_table", "dataset_figures", "attention_figure"]


@dataclass
class ReportConfig:
    """What to report on; every field but ``runs`` is optional."""

    runs: list[str]  # trained models (Tables 6.1-6.3, appendices, per-patient)
    backbone_runs: list[str] = field(default_factory=list)
    comparison_runs: list[str] = field(default_factory=list)  # 2D and 3D models on one split (the related works)
    encoder_runs: list[str] = field(default_factory=list)  # the LGG encoder comparison (study.encoder_comparison)
    fine_tuning_runs: list[str] = field(default_factory=list)  # frozen / retrained / fine-tuned / scratch (study.fine_tuning)
    attention_run: str | None = None  # a native.att_unet_pyramid run: attention-map figure (Røvang's (2021) fig. 8.5)
    tunings: list[str] = field(default_factory=list)
    cross_validations: list[str] = field(default_factory=list)  # mslesion evaluate --cross-validation folders
    ablations: list[str] = field(default_factory=list)  # cross-validation folders of one ablation (study.ablation)
    epoch_study_run: str | None = None
    epoch_every: int = 25
    dataset: str | None = None  # prepared slice dataset, for the data figures
    eval_name: str = "eval_test"
    out: str = "results"
    title: str = "mslesion report"
    note: str = ""  # how these results were produced, printed at the top of report.md
    overwrite: bool = False  # replace a report written before at ``out``


class _Writer:
    """Writes tables/figures and remembers, in order, what went where and from what."""

    def __init__(self, out: Path, unlearned: list[str] | None = None):
        self.out = out
        self.unlearned = list(unlearned or [])  # model labels whose rows get the "did not learn" note
        self.provenance: dict[str, dict] = {}
        self.sections: list[str] = []

    def table(self, name: str, table: pd.DataFrame, caption: str, sources: dict) -> None:
        if table.empty:
            return
        table = rt.flag_unlearned(table, self.unlearned)
        paths = write_table(table, self.out / "tables" / name, caption, sources)
        self.provenance[f"tables/{name}.csv"] = sources
        self.sections.append(paths[1].read_text(encoding="utf-8"))

    def figure(self, name: str, figure, caption: str, sources: dict) -> None:
        plotting.save_figure(figure, self.out / "figures" / f"{name}.png", sources)
        self.provenance[f"figures/{name}.png"] = sources
        self.sections.append(f"**{caption}**\n\n![{caption}](figures/{name}.png)\n")


def _fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return "n/a"
        return f"{value:.4g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}"
    return str(value)


def write_table(table: pd.DataFrame, stem: Path, caption: str, sources: dict) -> list[Path]:
    """``stem.csv`` (full precision), ``stem.md`` and ``stem.tex`` (4 decimals), atomically."""
    stem = Path(stem)
    shown = table.map(_fmt)
    save_csv(stem.with_suffix(".csv"), table)
    header = "| " + " | ".join(map(str, shown.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in shown.columns) + " |"
    body = ["| " + " | ".join(str(v).replace("|", "/") for v in row) + " |" for row in shown.to_numpy()]
    src = "; ".join(f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in sorted(sources.items()))
    md = f"**{caption}**\n\n" + "\n".join([header, rule, *body]) + f"\n\n<sub>Source: {src}</sub>\n"
    save_text(stem.with_suffix(".md"), md)
    latex = shown.to_latex(index=False, caption=caption, label=f"tab:{stem.name}", escape=True)
    save_text(stem.with_suffix(".tex"), latex)
    return [stem.with_suffix(s) for s in (".csv", ".md", ".tex")]


def _histories(runs: list[Path]) -> dict[str, pd.DataFrame]:
    return {rt.run_label(r): read_history(r) for r in runs}


def _examples(runs: list[Path], eval_name: str) -> dict[str, list[dict]]:
    out = {}
    for run in runs:
        path = run / eval_name / "examples.npz"
        if not path.is_file():
            continue
        data = np.load(path, allow_pickle=False)
        keys = sorted({k.split("/")[0] for k in data.files}, key=lambda k: ("good", "average", "bad").index(k.split("_")[0]))
        shown = []
        for key in keys:
            patient, k, dice, label = data[f"{key}/info"].tolist()
            shown.append({"image": data[f"{key}/image"], "truth": data[f"{key}/truth"], "pred": data[f"{key}/pred"],
                          "dice": float(dice), "label": label, "title": f"patient {patient}, slice {k}"})  # fmt: skip
        if shown:
            out[rt.run_label(run)] = shown
    return out


def _largest_lesion_slices(manifest: pd.DataFrame, n: int = 4) -> pd.DataFrame:
    """Per patient, the manifest row of its slice with the most lesion pixels (ties: the first row).

    The first ``n`` patients with any lesion, in manifest order. Figure 4.4 shows what a lesion
    looks like; a randomly drawn lesion slice was often a 1-pixel one.
    """
    lesion = manifest[manifest.lesion_pixels > 0]
    return lesion.loc[lesion.groupby("patient", sort=False).lesion_pixels.idxmax()].head(n)


def _load_slices(dataset: Path, rows: pd.DataFrame) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """The centre channel, the mask and a title of each manifest row's slice."""
    from mslesion.data.reader import open_case

    images, masks, titles = [], [], []
    for row in rows.itertuples():
        image, mask, _ = open_case(dataset, row.patient)
        images.append(np.asarray(image[row.row, ..., image.shape[-1] // 2]))
        masks.append(np.asarray(mask[row.row, ..., 0]) > 0)
        titles.append(f"patient {row.patient}, slice {row.slice_index}")
    return images, masks, titles


def dataset_figures(dataset: str | Path, writer: _Writer | None = None, n: int = 8, seed: int = 0) -> dict:
    """Figure 6.7 (dataset glimpse: ``n`` random lesion slices), 4.4 (per patient, the slice with most
    lesion pixels, with its mask) and 4.1 (orthogonal views) from a dataset."""
    from mslesion.data.cohort import discover_cases
    from mslesion.data.loading import load_case
    from mslesion.data.prep import PrepConfig
    from mslesion.data.reader import read_manifest

    dataset = Path(dataset)
    manifest = read_manifest(dataset)
    rng = np.random.default_rng(seed)
    lesion_rows = manifest[manifest.lesion_pixels > 0]
    pick = lesion_rows.iloc[np.sort(rng.choice(len(lesion_rows), size=min(n, len(lesion_rows)), replace=False))]
    images, _, titles = _load_slices(dataset, pick)
    largest = _largest_lesion_slices(manifest)
    lesion_images, lesion_masks, lesion_titles = _load_slices(dataset, largest)
    lesion_titles = [f"{t} ({r.lesion_pixels} lesion px)" for t, r in zip(lesion_titles, largest.itertuples())]
    src = {"dataset": str(dataset), "slices": [f"{r.patient}:{r.slice_index}" for r in pick.itertuples()]}
    sources = {"slices_with_masks": {**src, "slices": [f"{r.patient}:{r.slice_index}" for r in largest.itertuples()]}}
    figs = {
        "dataset_glimpse": (fig.plot_image_grid(images, None, titles), "Figure 6.7: dataset glimpse (prepared slices)"),
        "slices_with_masks": (fig.plot_image_grid(lesion_images, lesion_masks, lesion_titles),
                              "Figure 4.4: slices with their lesion masks (red): per patient, the slice with the "
                              "most lesion pixels"),
    }  # fmt: skip
    prep = load_json(dataset / PREP_CONFIG)
    first = manifest.groupby("patient", sort=False).lesion_pixels.sum().idxmax()
    case = [c for c in discover_cases(prep["source"], prep.get("layout_found") or "auto").cases if c.patient_id == first]
    if case:
        loaded = load_case(case[0], allow_empty_mask=True, source=PrepConfig.from_dict(prep).source())
        figs["orthogonal_views"] = (
            fig.plot_orthogonal_views(loaded.stack[..., 0], loaded.mask, loaded.spacing_zhw_mm,
                                      title=f"patient {first}: {prep['modalities'][0]} with lesion mask"),
            "Figure 4.1: axial, coronal and sagittal views of a volume with its mask",
        )  # fmt: skip
    if writer is not None:
        for name, (figure, caption) in figs.items():
            writer.figure(name, figure, caption, sources.get(name, src) if name != "orthogonal_views"
                          else {**src, "patient": first})  # fmt: skip
    return {name: f for name, (f, _) in figs.items()}


def attention_figure(run: str | Path, writer: _Writer | None = None, eval_name: str = "eval_test"):
    """Attention coefficients of a pyramid attention U-Net's gates on the test slice with most lesion."""
    from mslesion.data.reader import open_case, read_manifest
    from mslesion.infer.inference import open_run
    from mslesion.models.pyramid_att_unet import attention_maps
    from mslesion.train.datasets import split_patients_of

    trained = open_run(run)
    dataset = trained.config["dataset"]
    test = set(split_patients_of(dataset, "test", trained.config.get("fold", 0)))
    manifest = read_manifest(dataset)
    candidates = manifest[manifest.patient.isin(test)]
    row = candidates.sort_values(["lesion_pixels", "patient", "row"], ascending=[False, True, True]).iloc[0]
    image, mask, _ = open_case(dataset, row.patient)
    x = np.asarray(image[row.row : row.row + 1])
    maps = {k: v[0] for k, v in attention_maps(trained.model, x).items()}
    figure = fig.plot_attention_maps(x[0], maps, np.asarray(mask[row.row, ..., 0]) > 0,
                                     title=f"{rt.run_label(run)}: patient {row.patient}, slice {row.slice_index}")
    if writer is not None:
        writer.figure("attention_maps", figure, "Attention coefficients of the gates, deepest first (Røvang's (2021) fig. 8.5)",
                      {"runs": [str(run)], "slice": f"{row.patient}:{row.slice_index}"})  # fmt: skip
    return figure


def build_report(config: ReportConfig | dict) -> Path:
    """Write every table and figure the runs allow into ``config.out``; returns ``report.md``.

    The folder is built whole and swapped in (:func:`mslesion.outputs.output_dir`):
    a report written before is replaced only with ``config.overwrite``, and a
    folder holding anything else is refused.
    """
    config = ReportConfig(**config) if isinstance(config, dict) else config
    inputs = [*config.runs, *config.backbone_runs, *config.comparison_runs, *config.encoder_runs,
              *config.fine_tuning_runs, *config.tunings, *config.cross_validations, *config.ablations,
              config.epoch_study_run, config.attention_run, config.dataset]  # fmt: skip
    with output_dir(config.out, "report", overwrite=config.overwrite, inputs=inputs) as tmp:
        _write_report(config, tmp)
    return Path(config.out) / "report.md"


def _flag_titles(histories: dict[str, pd.DataFrame], unlearned: list[str]) -> dict[str, pd.DataFrame]:
    """``histories`` with " (did not learn)" after the labels of ``unlearned`` models (figure panel titles)."""
    return {f"{k} ({rt.DID_NOT_LEARN})" if k in unlearned else k: v for k, v in histories.items()}


def _write_report(config: ReportConfig, out: Path) -> None:
    every_run = dict.fromkeys(Path(r) for r in [*config.runs, *config.backbone_runs, *config.comparison_runs,
                                                *config.encoder_runs, *config.fine_tuning_runs])  # fmt: skip
    unlearned = list(dict.fromkeys(rt.unlearned_models(list(every_run))))
    w = _Writer(out, unlearned)
    runs = [Path(r) for r in config.runs]
    src = {"runs": [str(r) for r in runs]}
    ev = {**src, "evaluation": config.eval_name}
    if runs:
        w.table("table_6_1_parameters", rt.parameters_table(runs), "Table 6.1: number of parameters", src)
        w.table("table_6_2_dice", rt.dice_table(runs), "Table 6.2: training and validation Dice (last epoch; best)", src)
        choice = rt.checkpoint_table(runs)
        if not choice.empty:
            w.table("checkpoint_choice", choice, "The weights evaluated (model.keras): validation Dice of the best "
                    "epoch and the last, in training mode, in inference mode as trained and after batch-norm "
                    "recalibration; bn_gap above 0.1 is a warning", src)  # fmt: skip
        w.table("table_6_3_test_iou", et.test_iou_table(runs, config.eval_name),
                "Table 6.3: test IoU (slice-level = the backbone report's unit; volume = per patient)", ev)  # fmt: skip
        w.table("appendix_i_accuracy_loss", rt.accuracy_loss_table(runs),
                "Appendix I table 1: accuracy and loss (last epoch)", src)  # fmt: skip
        per_patient = et.per_patient_table(runs, config.eval_name)
        w.table("per_patient_summary", et.patient_summary_table(per_patient),
                "Per-patient whole-volume metrics, mean ± SD over test patients", ev)  # fmt: skip
        w.table("per_patient", per_patient, "Per-patient whole-volume metrics", ev)
        lesionwise = et.lesionwise_table(runs, config.eval_name)
        rules = "; ".join(et.detection_rule(f) for f in pd.unique(lesionwise.get("detection_fraction", pd.Series())))
        w.table("lesionwise", lesionwise, "Lesion-wise detection by lesion size (voxels), summed over patients"
                + (f"; {rules}" if rules else ""), ev)  # fmt: skip
        histories = _histories(runs)
        w.figure("dice_curves", curves.plot_metric_curves(_flag_titles(histories, unlearned), "dice"),
                 "Figures 6.1-6.6: Dice per epoch (one y axis for all panels)", src)  # fmt: skip
        w.figure("accuracy_loss", curves.plot_accuracy_loss(histories), "Appendix I figures: accuracy and loss", src)
        examples = _examples(runs, config.eval_name)
        if examples:
            w.figure("predictions_good_average_bad", fig.plot_prediction_examples(examples),
                     "Appendix II: good / average / bad predictions by slice-Dice tertile", ev)  # fmt: skip
        if not lesionwise.empty:
            w.figure("lesion_brackets", curves.plot_lesion_brackets(lesionwise),
                     "Lesion recall and precision by lesion size", ev)  # fmt: skip
    if config.backbone_runs:
        bb = [Path(r) for r in config.backbone_runs]
        w.table("backbone_comparison", rt.backbone_table(bb), "Backbone comparison", {"runs": [str(r) for r in bb]})
        w.figure("backbone_dice_curves", curves.plot_metric_curves(_flag_titles(_histories(bb), unlearned), "dice"),
                 "Dice per epoch for each encoder", {"runs": [str(r) for r in bb]})  # fmt: skip
    if config.encoder_runs:
        enc = [Path(r) for r in config.encoder_runs]
        esrc = {"runs": [str(r) for r in enc], "evaluation": config.eval_name}
        w.table("encoder_comparison", et.encoder_comparison_table(enc, config.eval_name),
                "Encoder comparison (the LGG encoder comparison, sections 6.1-6.4): validation Dice/IoU of the best "
                "epoch and per-patient test Dice/IoU (mean, SD)", esrc)  # fmt: skip
        w.figure("encoder_learning_curves", curves.plot_metric_curves(_flag_titles(_histories(enc), unlearned), "iou"),
                 "IoU per epoch for each encoder (the project's figures 4-9)", esrc)  # fmt: skip
    if config.fine_tuning_runs:
        ft = [Path(r) for r in config.fine_tuning_runs]
        w.table("fine_tuning", et.fine_tuning_table(ft, config.eval_name),
                "The backbone report's chapter 7 as a table: ImageNet encoders frozen, retrained from the start, "
                "fine-tuned after a frozen warm-up, and random encoders from scratch, on one split",
                {"runs": [str(r) for r in ft], "evaluation": config.eval_name})  # fmt: skip
    if config.comparison_runs:
        cmp = [Path(r) for r in config.comparison_runs]
        w.table("model_comparison", et.model_comparison_table(cmp, config.eval_name),
                "2D and 3D models on the same split: size, training speed (images or patches/s), per-patient Dice, "
                "lesion F1", {"runs": [str(r) for r in cmp], "evaluation": config.eval_name})  # fmt: skip
    for cv in map(Path, config.cross_validations):
        w.table(f"cross_validation_{cv.name}", et.cross_validation_table(cv),
                f"Cross-validation ({cv.name}): out-of-fold test metrics per fold (mean over its test patients) "
                "and mean ± SD across folds, as Rondinella et al. (2023) Table 2", {"cross_validation": str(cv)})
    if config.ablations:
        w.table("ablation", et.ablation_table(config.ablations),
                "Ablation over folds, as Rondinella et al. (2023) Table 5: out-of-fold test Dice per fold (mean over "
                "its patients) and mean ± SD across folds", {"cross_validations": list(map(str, config.ablations))})
    if config.tunings:
        tunings = [Path(t) for t in config.tunings]
        table = rt.lr_search_table(tunings)
        tsrc = {"tunings": [str(t) for t in tunings]}
        w.table("lr_search", table, "Learning-rate search: best validation Dice per trial", tsrc)
        trial_curves = {}
        for t in tunings:
            path = t / "trial_histories.json"
            if path.is_file():
                trial_curves.update({f"trial {k} (lr {table.set_index('trial').learning_rate.get(k, float('nan')):g})": v
                                     for k, v in sorted(load_json(path).items())})  # fmt: skip
        w.figure("lr_search", curves.plot_lr_search(table, trial_curves or None), "Learning-rate search", tsrc)
    if config.epoch_study_run:
        run = Path(config.epoch_study_run)
        w.table("epoch_study", rt.epoch_study_table(run, config.epoch_every),
                f"Epoch study: validation Dice every {config.epoch_every} epochs", {"runs": [str(run)]})  # fmt: skip
    if config.dataset:
        dataset_figures(config.dataset, w)
    if config.attention_run:
        attention_figure(config.attention_run, w, config.eval_name)
    save_json(out / "provenance.json", w.provenance)
    head = f"# {config.title}\n\n" + (f"{config.note}\n\n" if config.note else "")
    loud = rt.bn_warnings([Path(r) for r in config.runs])
    if loud:
        head += "".join(f"> **{line}**\n>\n" for line in loud) + "\n"
    if unlearned:  # the rule once, here; the tables' "note" column and the curve titles only name it
        head += (f"> **{len(unlearned)} model(s) {rt.DID_NOT_LEARN_RULE}** (marked \"{rt.DID_NOT_LEARN}\" in the "
                 f"tables' `note` column): {'; '.join(unlearned)}. Their test numbers describe a model that "
                 "never learned to segment, not its architecture.\n\n")  # fmt: skip
    save_text(out / "report.md", head + "\n".join(w.sections))
    save_text(out / "README.md", _readme(config))


def _readme(config: ReportConfig) -> str:
    """What the folder holds, for a reader who finds it without the toolkit."""
    return (f"# {config.title}\n\n" + (f"{config.note}\n\n" if config.note else "") +
            "- `report.md`: every table and figure on one page, in report order.\n"
            "- `tables/`: each table as `.csv` (full precision), `.md` and `.tex`.\n"
            "- `figures/`: PNGs; each carries a `Source` text chunk (JSON of its inputs).\n"
            "- `provenance.json`: output file -> the runs and data it came from.\n\n"
            "Written by `mslesion report`, which regenerates the tables and figures byte for byte from the same "
            "runs. It replaces this folder whole (only with `--overwrite`): keep notes of your own elsewhere.\n")
