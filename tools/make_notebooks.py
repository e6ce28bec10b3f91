"""Write notebooks 01-04 from the cell sources below (outputs empty). Run: python tools/make_notebooks.py"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parents[1] / "notebooks"

INSTALL = '''# Get mslesion into this kernel, no restart needed: a clone or a read-only copy (a Kaggle dataset) is used
# where it is; MSLESION_PIP (a wheel or git+https URL) is pip-installed; then only missing dependencies are added.
import importlib, os, subprocess, sys
from pathlib import Path

def _mslesion_source():
    roots = [Path(MSLESION_SRC)] if MSLESION_SRC else [Path.cwd(), Path.cwd().parent, Path.cwd() / "mslesion",
             Path("/content/mslesion"), Path("/content/drive/MyDrive/mslesion"), *sorted(Path("/kaggle/input").glob("*")),
             *sorted(Path("/kaggle/input").glob("*/*"))]
    for root in roots:
        if (root / "mslesion" / "__init__.py").is_file() and (root / "pyproject.toml").is_file():
            return root.resolve()
    if MSLESION_SRC:
        raise FileNotFoundError(f"MSLESION_SRC={MSLESION_SRC}: no mslesion/__init__.py and pyproject.toml there")

_source = _mslesion_source()
if _source is None and MSLESION_PIP:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", MSLESION_PIP], check=True)
elif _source is not None and str(_source) not in sys.path:
    sys.path.insert(0, str(_source))  # a clone's root folder named mslesion would otherwise import as an empty namespace
    os.environ["PYTHONPATH"] = os.pathsep.join([str(_source), *filter(None, [os.environ.get("PYTHONPATH")])])
for _name in [m for m in sys.modules if m == "mslesion" or m.startswith("mslesion.")]:
    if getattr(sys.modules[_name], "__file__", None) is None:
        del sys.modules[_name]
importlib.invalidate_caches()
try:
    from mslesion.env import platform_setup
except ImportError:
    raise ImportError("mslesion not found: clone the repository (git clone URL mslesion), attach it as a Kaggle "
                      "dataset, or set MSLESION_SRC to its folder or MSLESION_PIP to a wheel or git URL") from None
platform_setup.setup(_source)'''

DEVICE = '''from mslesion.train import runtime
strategy = runtime.pick_strategy(STRATEGY)  # one per session: every run, the search and evaluation use this one
mixed = runtime.auto_mixed_precision() if MIXED_PRECISION == "auto" else bool(MIXED_PRECISION)
accelerator = {"strategy": STRATEGY, "mixed_precision": mixed, "jit_compile": JIT_COMPILE}
print(f"{type(strategy).__name__}: {strategy.num_replicas_in_sync} replica(s) on "
      f"{runtime.describe_devices() or 'the CPU'}; mixed precision {mixed}, XLA {JIT_COMPILE}")'''


PLAT = '''WORK = None                     # working folder: None = /kaggle/working, a Drive folder on Colab, else here
MSLESION_SRC = None             # the repository folder (clone or Kaggle dataset); None: look in the usual places
MSLESION_PIP = None             # or a wheel / "git+https://..." URL to pip-install when no source folder is found'''


def params(text: str):
    return new_code_cell(text, metadata={"tags": ["parameters"]})


NB01 = [
    new_markdown_cell("""# 01 · Data preparation: volumes → normalised slices, split by patient

Reproduces the data chapter of the study (the backbone report, ch. 4) without its two bugs: slices are stored as float
arrays (not matplotlib PNGs) and the train/test split keeps each patient on one side.

On Kaggle, attach the MS dataset of Muslim et al. (2022) with *Add Input*: it is found under `/kaggle/input`,
however deep and whatever its folder names (`.nii` or `.nii.gz`). On Colab, put it in Drive or `/content`
and set `SOURCE`. `SOURCE = "synthetic"` runs on the built-in synthetic cohort instead; with no data found
the notebook stops and says where it looked. Everything is written under the working folder `WORK`."""),
    params('''# Parameters (papermill: tag "parameters")
SOURCE = None                   # cohort folder; None: search the attached inputs; "synthetic": built-in cohort
OUT = "data/slices/ms"          # where the slice dataset goes (inside WORK)
PATIENTS = 10                   # synthetic cohort size (SOURCE = "synthetic")
SELECTION = "lesion"            # lesion | brain | entropy | all
CONTEXT = 1                     # 2.5D: odd number of adjacent slices as channels
SIZE = 256
SEED = 0
OVERWRITE = False               # True: replace a dataset this notebook prepared at OUT before
''' + PLAT),
    new_code_cell(INSTALL),
    new_code_cell('''import os
from pathlib import Path
import matplotlib.pyplot as plt
from mslesion.data import prep, reader, splits
from mslesion.env import workspace

work = workspace.working_folder(WORK)
source = workspace.resolve_source(SOURCE, work, PATIENTS, SEED)
out = work / OUT
print(f"working folder {work}; {'SYNTHETIC cohort' if workspace.is_synthetic(source) else 'real data'}: {source}")'''),
    new_code_cell('''config = prep.PrepConfig(selection=SELECTION, context=CONTEXT, size=(SIZE, SIZE), seed=SEED)
summary = prep.prepare_dataset(source, out, config, jobs=os.cpu_count() or 1, overwrite=OVERWRITE)
print(summary)
print(workspace.describe_dataset(out))'''),
    new_markdown_cell("Slices with their masks (the backbone report's figure 4.4): the slice of each of the first patients with the most lesion pixels."),
    new_code_cell('''manifest = reader.read_manifest(out)
best = manifest.loc[manifest.groupby("patient").lesion_pixels.idxmax()].head(4)
fig, axes = plt.subplots(2, len(best), figsize=(3 * len(best), 6), squeeze=False)
for col, row in enumerate(best.itertuples()):
    image, mask, meta = reader.open_case(out, row.patient)
    centre = image.shape[-1] // 2
    axes[0, col].imshow(image[row.row, ..., centre], cmap="gray")
    axes[1, col].imshow(mask[row.row, ..., 0], cmap="gray")
    axes[0, col].set_title(f"patient {row.patient}, slice {row.slice_index}")
    axes[1, col].set_title(f"mask: {row.lesion_pixels} px")
for ax in axes.flat:
    ax.axis("off")
plt.show()  # notebook 04 writes every figure of the report into its results folder'''),
    new_markdown_cell("Lesion pixels per slice and the patient-level split."),
    new_code_cell('''fold = splits.load_splits(out / "splits.json")["folds"][0]
print({part: len(ids) for part, ids in fold.items()}, "patients")
manifest.groupby("patient").agg(slices=("row", "size"), lesion_pixels=("lesion_pixels", "sum")).T'''),
]

NB02 = [
    new_markdown_cell("""# 02 · Backbone comparison

The backbone report (section 5.1) picked its U-Net encoder after comparing backbones on the same data; the LGG encoder comparison compared
encoders on the LGG FLAIR dataset. This notebook trains one U-Net per encoder on the **same patient-level split**
and tabulates size, training speed and validation Dice.

On Kaggle/Colab: run notebook 01 first (it prepares `DATASET`), keep `WEIGHTS = "imagenet"`, and the GPU/TPU is
used when present. With no data and no internet (our tests, a laptop) set `QUICK = True`: a synthetic cohort is
prepared and the encoders are trained from scratch for a few epochs."""),
    params('''# Parameters (papermill: tag "parameters")
DATASET = "data/slices/ms"      # prepared by notebook 01 (in WORK or an attached earlier output); "synthetic"
RUNS = "runs/backbones"
BACKBONES = ["vgg16", "resnet34", "mobilenetv2", "efficientnetb0"]
MODEL = "sm.unet"
EPOCHS = 20
TIME_BUDGET = None              # minutes of training for the whole cell, split over the runs; None: EPOCHS decide
RECIPE = None                   # None: mslesion.study.recipes.DEFAULT_RECIPE (best measured on real data); "seed000"
LOSS = None                     # None: the recipe's
LEARNING_RATE = None            # None: the recipe's
BATCH_SIZE = 8
WEIGHTS = "imagenet"            # None offline: no download, encoders trained from scratch
QUICK = False                   # smaller settings (widths; synthetic at 64x64) for a quick look, any data
SEED = 0
DETERMINISTIC = False           # True: runs repeat bit for bit on this machine (op determinism)
STRATEGY = "auto"               # auto: TPU if present, several GPUs mirrored, else one device
MIXED_PRECISION = "auto"        # auto: on where it pays (GPU of compute capability >= 7.0: float16; TPU: bfloat16)
JIT_COMPILE = False             # XLA-compile the training step (benchmarks/bench_train.py --jit measures it)
ENCODER_COMPARISON = False      # also the LGG encoder comparison: scratch U-Net, VGG16 / ResNet50 retrained, ResNet50 2 frozen
ENCODER_VARIANTS = None         # None: all four (mslesion.study.encoder_comparison.ENCODER_VARIANTS)
ENCODER_EPOCHS = 120            # as the source trained its U-Net; TIME_BUDGET applies here too
ENCODER_RUNS = "runs/encoders"
''' + PLAT),
    new_code_cell(INSTALL),
    new_code_cell(DEVICE),
    new_code_cell('''from mslesion.report import curves, tables as report_tables
from mslesion.study import experiments, inputs
from mslesion.train import history

work, dataset, options, runs_dir = inputs.notebook_inputs(DATASET, RUNS, WORK, QUICK, SEED, RECIPE, loss=LOSS,
                                                         learning_rate=LEARNING_RATE)
runs = experiments.compare_backbones(dataset, runs_dir, tuple(BACKBONES), model=MODEL, epochs=EPOCHS, weights=WEIGHTS,
                                     batch_size=BATCH_SIZE, seed=SEED, deterministic=DETERMINISTIC, progress=True,
                                     time_budget_minutes=TIME_BUDGET, **accelerator, **options)
report_tables.backbone_table(runs)  # notebook 04 writes it, and the curves, into its results folder'''),
    new_markdown_cell("Validation Dice per epoch for each encoder."),
    new_code_cell('''curves.plot_metric_curves({report_tables.run_label(r): history.read_history(r) for r in runs}, "dice")'''),
    new_markdown_cell("""## The LGG encoder comparison (set `ENCODER_COMPARISON = True`)

The "Brain MRI Segmentation" project compared, on the LGG FLAIR data of Buda et al. (2019), a plain U-Net from
scratch with U-Nets whose ImageNet VGG16 or ResNet50 encoder was retrained, and ResNet50 with its first two blocks
frozen (Dice loss, augmentation). Point `DATASET` at LGG slices prepared by notebook 01 (or any other dataset);
each model is then evaluated per patient on its test patients. `QUICK` uses ResNet18 for ResNet50."""),
    new_code_cell('''from IPython.display import display
from mslesion.report import eval_tables
from mslesion.study import encoder_comparison

if ENCODER_COMPARISON:
    encoder_runs = encoder_comparison.compare_encoders(
        dataset, work / ENCODER_RUNS, ENCODER_VARIANTS, epochs=ENCODER_EPOCHS, weights=WEIGHTS, quick=QUICK,
        batch_size=BATCH_SIZE, seed=SEED, deterministic=DETERMINISTIC, progress=True,
        time_budget_minutes=TIME_BUDGET, **accelerator)
    experiments.evaluate_runs(encoder_runs, verbose=True)
    display(eval_tables.encoder_comparison_table(encoder_runs))  # notebook 04 writes it into its results folder
else:
    print("ENCODER_COMPARISON is False: skipped")'''),
]

NB03 = [
    new_markdown_cell("""# 03 · Model training: the six models of Table 6.1 and the learning-rate search

The backbone report trained three keras-unet-collection models with a frozen ImageNet VGG16 encoder (U-Net, U-Net++,
attention U-Net) and three from scratch (U-Net, R2 U-Net, attention U-Net), binary cross-entropy, Adam 1e-3,
50 epochs (chapter 5), then searched the learning rate with keras-tuner (section 5.2.2). Each run writes its
own folder (config, history, checkpoints); each model is then evaluated per patient on whole volumes.

The training options come from `RECIPE`: by default the configuration that did best on real data in the
README's comparison; `RECIPE = "seed000"` trains exactly as the backbone report did (BCE on lesion slices, no
augmentation).

`QUICK = True` narrows the decoders and trains a few epochs on a synthetic cohort (no ImageNet weights offline:
the VGG16 encoders are then trained, and the tables say so)."""),
    params('''# Parameters (papermill: tag "parameters")
DATASET = "data/slices/ms"      # prepared by notebook 01 (in WORK or an attached earlier output); "synthetic"
RUNS = "runs/models"
TUNING_RUNS = "runs/tuning"
NATIVE_RUNS = "runs/native"
MODELS = None                   # None: all six keys of mslesion.study.table_6_1.REPORT_MODELS
NATIVE_MODELS = True            # also the related works' own models (pyramid attention U-Net, FC-DenseNet, 3D R2 att.)
NATIVE_3D = True                # include the 3D R2 attention U-Net (whole-volume patches; NIfTI data)
EPOCHS = 50
TIME_BUDGET = None              # minutes of training for the six models, split over the runs; None: EPOCHS decide
RECIPE = None                   # None: mslesion.study.recipes.DEFAULT_RECIPE; "seed000": the backbone report's BCE on lesion slices
LOSS = None                     # None: the recipe's
LEARNING_RATE = None            # None: the recipe's
BATCH_SIZE = 8
WEIGHTS = "imagenet"
QUICK = False
LEARNING_RATES = [1e-1, 1e-2, 1e-3, 1e-4]
LR_EPOCHS = 10
SEED = 0
DETERMINISTIC = False           # True: runs repeat bit for bit on this machine (op determinism)
STRATEGY = "auto"               # auto: TPU if present, several GPUs mirrored, else one device
MIXED_PRECISION = "auto"        # auto: on where it pays (GPU of compute capability >= 7.0: float16; TPU: bfloat16)
JIT_COMPILE = False             # XLA-compile the training step (benchmarks/bench_train.py --jit measures it)
''' + PLAT),
    new_code_cell(INSTALL),
    new_code_cell(DEVICE),
    new_code_cell('''from mslesion.env import workspace
from mslesion.report import curves, eval_tables, tables as report_tables
from mslesion.study import experiments, inputs
from mslesion.study.table_6_1 import REPORT_MODELS
from mslesion.train import history

work, dataset, options, runs_dir = inputs.notebook_inputs(DATASET, RUNS, WORK, QUICK, SEED, RECIPE, loss=LOSS,
                                                         learning_rate=LEARNING_RATE)
runs = experiments.train_report_models(dataset, runs_dir, EPOCHS, MODELS, quick=QUICK, weights=WEIGHTS,
                                       batch_size=BATCH_SIZE, seed=SEED, deterministic=DETERMINISTIC, progress=True,
                                       time_budget_minutes=TIME_BUDGET, **accelerator, **options)
report_tables.dice_table(runs)'''),
    new_markdown_cell("Dice per epoch (figures 6.1-6.6)."),
    new_code_cell('''curves.plot_metric_curves({report_tables.run_label(r): history.read_history(r) for r in runs}, "dice")'''),
    new_markdown_cell("""Every run also writes TensorBoard logs (`<run>/tensorboard`: the epoch scalars with the learning
rate, and per epoch three validation slices as image | truth | prediction). To watch them, also while a training
cell runs, paste the two lines printed below into a new cell (Kaggle and Colab show TensorBoard inline)."""),
    new_code_cell('''print(f"%load_ext tensorboard\\n%tensorboard --logdir {runs_dir}")'''),
    new_markdown_cell("Whole-volume, per-patient evaluation of every model on the test patients."),
    new_code_cell('''experiments.evaluate_runs(runs, verbose=True)
eval_tables.patient_summary_table(eval_tables.per_patient_table(runs))'''),
    new_markdown_cell("""The related works' own models on the same patients and split: the pyramid attention U-Net of
Røvang (2021, University of Oslo) on these slices, the FC-DenseNet with attention and ConvLSTM of Rondinella et al.
("Boosting multiple sclerosis lesion segmentation through attention mechanism") on brain-cropped slice triplets,
and the 3D R2 attention U-Net of the F.sh / 3DR2AUNet paper on patches of whole normalised volumes. Notebook 04 compares them with the six above and
draws the attention gates of the pyramid model."""),
    new_code_cell('''from IPython.display import display

native = []
if NATIVE_MODELS:
    native_dir = workspace.bring_forward(NATIVE_RUNS, work, report_tables.find_runs)
    native = experiments.train_native_models(dataset, native_dir, EPOCHS, quick=QUICK, include_3d=NATIVE_3D,
                                             batch_size=BATCH_SIZE, seed=SEED, deterministic=DETERMINISTIC,
                                             progress=True, verbose=2, time_budget_minutes=TIME_BUDGET,
                                             derived_root=work / "data" / "slices", **accelerator, **options)
    experiments.evaluate_runs(native, verbose=True)
    display(eval_tables.patient_summary_table(eval_tables.per_patient_table(native)))'''),
    new_markdown_cell("Learning-rate search (keras-tuner grid, objective validation Dice) on the scratch U-Net."),
    new_code_cell('''scratch = REPORT_MODELS["unet_scratch"]
params = dict(scratch.params, **({"filter_num": experiments.QUICK_FILTERS["scratch"]} if QUICK else {}))
tuning_dir = workspace.bring_forward(TUNING_RUNS, work, report_tables.find_tunings)
search = experiments.learning_rate_search(dataset, tuning_dir, scratch.registry_name, params, LEARNING_RATES,
                                          LR_EPOCHS, loss=options["loss"], batch_size=BATCH_SIZE, seed=SEED,
                                          deterministic=DETERMINISTIC, progress=True, strategy=STRATEGY,
                                          mixed_precision=mixed)
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
NATIVE_RUNS = "runs/native"     # notebook 03's related-work models: comparison table, attention figure
ENCODER_RUNS = "runs/encoders"  # notebook 02's LGG encoder comparison, when it ran
DATASET = "data/slices/ms"
EPOCH_STUDY_MODEL = "unet_scratch"  # the run whose history gives the epoch-study table
EPOCH_EVERY = 25
OUT = "results"
OVERWRITE = True                # replace the report this notebook wrote at OUT before (never other files)
''' + PLAT),
    new_code_cell(INSTALL),
    new_code_cell('''from pathlib import Path
from IPython.display import Image, Markdown, display
from mslesion.report import build as report, tables as report_tables
from mslesion.env import workspace

work = workspace.working_folder(WORK)
inputs = workspace.input_roots()
runs_dir = workspace.find_prepared(RUNS, work, report_tables.find_runs, inputs)  # this session's, else an earlier one's
if runs_dir is None:
    raise workspace.DataNotFoundError(f"{RUNS}: no finished runs in {work / RUNS} nor in the inputs "
                                      f"{[str(r) for r in inputs]}; run notebook 03 first")
runs = report_tables.find_runs(runs_dir)
backbones = workspace.find_prepared(BACKBONE_RUNS, work, report_tables.find_runs, inputs)
encoders = workspace.find_prepared(ENCODER_RUNS, work, report_tables.find_runs, inputs)
tunings = workspace.find_prepared(TUNING_RUNS, work, report_tables.find_tunings, inputs)
native_dir = workspace.find_prepared(NATIVE_RUNS, work, report_tables.find_runs, inputs)
native = report_tables.find_runs(native_dir) if native_dir else []
pyramid = [r for r in native if "native.att_unet_pyramid" in str(r)]
dataset = workspace.find_prepared(DATASET, work, "manifest.csv", inputs)
study = [r for r in runs if r.parent.name.endswith("__" + EPOCH_STUDY_MODEL)]
print(f"working folder {work}; {len(runs)} runs from {runs_dir}")
if dataset is not None:
    print(workspace.describe_dataset(dataset))
config = report.ReportConfig(
    runs=[str(r) for r in runs],
    backbone_runs=[str(r) for r in report_tables.find_runs(backbones)] if backbones else [],
    encoder_runs=[str(r) for r in report_tables.find_runs(encoders)] if encoders else [],
    tunings=[str(t) for t in report_tables.find_tunings(tunings)] if tunings else [],
    comparison_runs=[str(r) for r in runs + native] if native else [],
    attention_run=str(pyramid[0]) if pyramid else None,
    epoch_study_run=str(study[0]) if study else None, epoch_every=EPOCH_EVERY,
    dataset=str(dataset) if dataset else None, out=str(work / OUT), overwrite=OVERWRITE)
md = report.build_report(config)
print(f"{len(runs)} runs ->", md)'''),
    new_code_cell('''display(Markdown(md.read_text()))'''),
    new_code_cell('''for png in sorted((work / OUT / "figures").glob("*.png")):
    display(Markdown(f"`{png.name}`"), Image(str(png)))'''),
]

for name, cells in (("01_data_prep", NB01), ("02_backbone_comparison", NB02), ("03_model_training", NB03), ("04_results_tables", NB04)):
    for i, cell in enumerate(cells):
        cell.id = f"c{i:02d}"  # stable ids: regenerating changes only what the text changed
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    nbformat.write(nb, HERE / f"{name}.ipynb")
    print("wrote", name)
