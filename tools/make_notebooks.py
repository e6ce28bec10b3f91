"""Write notebooks 02-04 from the cell sources below (outputs empty). Run: python tools/make_notebooks.py"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parents[1] / "notebooks"

INSTALL = '''import importlib.util
if importlib.util.find_spec("mslesion") is None:  # Colab / Kaggle: install the package, keep their TensorFlow
    %pip install -q -e {MSLESION_SRC}'''

DEVICE = '''from mslesion import runtime
strategy = runtime.pick_strategy("auto")  # TPU, several GPUs, one GPU or the CPU: whatever is there
print(strategy.__class__.__name__, strategy.num_replicas_in_sync, "replica(s)")'''


def params(text: str):
    return new_code_cell(text, metadata={"tags": ["parameters"]})


NB02 = [
    new_markdown_cell("""# 02 · Backbone comparison

Seed 000 (section 5.1) picked its U-Net encoder after comparing backbones on the same data; seed 004 compared
encoders on the LGG FLAIR dataset. This notebook trains one U-Net per encoder on the **same patient-level split**
and tabulates size, training speed and validation Dice.

On Kaggle/Colab: run notebook 01 first (it prepares `DATASET`), keep `WEIGHTS = "imagenet"`, and the GPU/TPU is
used when present. With no data and no internet (our tests, a laptop) set `QUICK = True`: a synthetic cohort is
prepared and the encoders are trained from scratch for a few epochs."""),
    params('''# Parameters (papermill: tag "parameters")
DATASET = "data/slices/ms"      # prepared by notebook 01; made from a synthetic cohort when absent
RUNS = "runs/backbones"
BACKBONES = ["vgg16", "resnet34", "mobilenetv2", "efficientnetb0"]
MODEL = "sm.unet"
EPOCHS = 20
RECIPE = None                   # None: mslesion.experiments.DEFAULT_RECIPE (best measured on real data); "seed000"
LOSS = None                     # None: the recipe's
LEARNING_RATE = None            # None: the recipe's
BATCH_SIZE = 8
WEIGHTS = "imagenet"            # None offline: no download, encoders trained from scratch
QUICK = False                   # synthetic cohort at 64x64 when DATASET is absent
SEED = 0
DETERMINISTIC = False           # True: runs repeat bit for bit on this machine (op determinism)
MSLESION_SRC = "/content/mslesion"'''),
    new_code_cell(INSTALL),
    new_code_cell(DEVICE),
    new_code_cell('''from mslesion import experiments, figures, report_tables, training

dataset = experiments.ensure_dataset(DATASET, size=64 if QUICK else 256, seed=SEED)
options = experiments.recipe_options(RECIPE, loss=LOSS, learning_rate=LEARNING_RATE)
print("training options:", options)
runs = experiments.compare_backbones(dataset, RUNS, tuple(BACKBONES), model=MODEL, epochs=EPOCHS, weights=WEIGHTS,
                                     batch_size=BATCH_SIZE, seed=SEED, deterministic=DETERMINISTIC, **options)
report_tables.backbone_table(runs)  # notebook 04 writes it, and the curves, into its results folder'''),
    new_markdown_cell("Validation Dice per epoch for each encoder."),
    new_code_cell('''figures.plot_metric_curves({report_tables.run_label(r): training.read_history(r) for r in runs}, "dice")'''),
]

NB03 = [
    new_markdown_cell("""# 03 · Model training: the six models of Table 6.1 and the learning-rate search

Seed 000 trained three keras-unet-collection models with a frozen ImageNet VGG16 encoder (U-Net, U-Net++,
attention U-Net) and three from scratch (U-Net, R2 U-Net, attention U-Net), binary cross-entropy, Adam 1e-3,
50 epochs (chapter 5), then searched the learning rate with keras-tuner (section 5.2.2). Each run writes its
own folder (config, history, checkpoints); each model is then evaluated per patient on whole volumes.

The training options come from `RECIPE`: by default the configuration that did best on real data in the
README's comparison; `RECIPE = "seed000"` trains exactly as seed 000 did (BCE on lesion slices, no
augmentation).

`QUICK = True` narrows the decoders and trains a few epochs on a synthetic cohort (no ImageNet weights offline:
the VGG16 encoders are then trained, and the tables say so)."""),
    params('''# Parameters (papermill: tag "parameters")
DATASET = "data/slices/ms"
RUNS = "runs/models"
TUNING_RUNS = "runs/tuning"
MODELS = None                   # None: all six keys of mslesion.models.REPORT_MODELS
EPOCHS = 50
RECIPE = None                   # None: mslesion.experiments.DEFAULT_RECIPE; "seed000": seed 000's BCE on lesion slices
LOSS = None                     # None: the recipe's
LEARNING_RATE = None            # None: the recipe's
BATCH_SIZE = 8
WEIGHTS = "imagenet"
QUICK = False
LEARNING_RATES = [1e-1, 1e-2, 1e-3, 1e-4]
LR_EPOCHS = 10
SEED = 0
DETERMINISTIC = False           # True: runs repeat bit for bit on this machine (op determinism)
MSLESION_SRC = "/content/mslesion"'''),
    new_code_cell(INSTALL),
    new_code_cell(DEVICE),
    new_code_cell('''from mslesion import experiments, figures, report_tables, training
from mslesion.models import REPORT_MODELS

dataset = experiments.ensure_dataset(DATASET, size=64 if QUICK else 256, seed=SEED)
options = experiments.recipe_options(RECIPE, loss=LOSS, learning_rate=LEARNING_RATE)
print("training options:", options)
runs = experiments.train_report_models(dataset, RUNS, EPOCHS, MODELS, quick=QUICK, weights=WEIGHTS,
                                       batch_size=BATCH_SIZE, seed=SEED, deterministic=DETERMINISTIC, **options)
report_tables.dice_table(runs)'''),
    new_markdown_cell("Dice per epoch (figures 6.1-6.6)."),
    new_code_cell('''figures.plot_metric_curves({report_tables.run_label(r): training.read_history(r) for r in runs}, "dice")'''),
    new_markdown_cell("Whole-volume, per-patient evaluation of every model on the test patients."),
    new_code_cell('''experiments.evaluate_runs(runs)
report_tables.patient_summary_table(report_tables.per_patient_table(runs))'''),
    new_markdown_cell("Learning-rate search (keras-tuner grid, objective validation Dice) on the scratch U-Net."),
    new_code_cell('''scratch = REPORT_MODELS["unet_scratch"]
params = dict(scratch.params, **({"filter_num": experiments.QUICK_FILTERS["scratch"]} if QUICK else {}))
search = experiments.learning_rate_search(dataset, TUNING_RUNS, scratch.registry_name, params, LEARNING_RATES,
                                          LR_EPOCHS, loss=options["loss"], batch_size=BATCH_SIZE, seed=SEED,
                                          deterministic=DETERMINISTIC)
report_tables.lr_search_table([search])'''),
]

NB04 = [
    new_markdown_cell("""# 04 · Results: every table and figure of the report

Regenerates, from the run folders of notebooks 02 and 03, Tables 6.1-6.3, the Appendix I table, the backbone
comparison, the learning-rate search, the epoch study and the per-patient / lesion-wise tables (CSV, Markdown,
LaTeX), and the figures (Dice curves, accuracy/loss, dataset glimpse, slices with masks, orthogonal views,
good/average/bad predictions, learning-rate search, lesion detection by size) into `results/`. Running it twice
on the same runs gives identical tables; each output records the runs it came from (`results/provenance.json`)."""),
    params('''# Parameters (papermill: tag "parameters")
RUNS = "runs/models"
BACKBONE_RUNS = "runs/backbones"
TUNING_RUNS = "runs/tuning"
DATASET = "data/slices/ms"
EPOCH_STUDY_MODEL = "unet_scratch"  # the run whose history gives the epoch-study table
EPOCH_EVERY = 25
OUT = "results"
OVERWRITE = True                # replace the report this notebook wrote at OUT before (never other files)
MSLESION_SRC = "/content/mslesion"'''),
    new_code_cell(INSTALL),
    new_code_cell('''from pathlib import Path
from IPython.display import Image, Markdown, display
from mslesion import report, report_tables

runs = report_tables.find_runs(RUNS)
study = [r for r in runs if r.parent.name.endswith("__" + EPOCH_STUDY_MODEL)]
config = report.ReportConfig(
    runs=[str(r) for r in runs],
    backbone_runs=[str(r) for r in report_tables.find_runs(BACKBONE_RUNS)] if Path(BACKBONE_RUNS).is_dir() else [],
    tunings=[str(t) for t in report_tables.find_tunings(TUNING_RUNS)] if Path(TUNING_RUNS).is_dir() else [],
    epoch_study_run=str(study[0]) if study else None, epoch_every=EPOCH_EVERY,
    dataset=DATASET if Path(DATASET).is_dir() else None, out=OUT, overwrite=OVERWRITE)
md = report.build_report(config)
print(f"{len(runs)} runs ->", md)'''),
    new_code_cell('''display(Markdown(md.read_text()))'''),
    new_code_cell('''for png in sorted((Path(OUT) / "figures").glob("*.png")):
    display(Markdown(f"`{png.name}`"), Image(str(png)))'''),
]

for name, cells in (("02_backbone_comparison", NB02), ("03_model_training", NB03), ("04_results_tables", NB04)):
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    nbformat.write(nb, HERE / f"{name}.ipynb")
    print("wrote", name)
