"""The names of the files in a dataset folder and a run folder, spelled once.

A dataset folder (``mslesion prep`` / ``prep3d``) holds :data:`MANIFEST`, :data:`SPLITS` and
its preparation record (:data:`PREP_CONFIG` for 2D slices, :data:`PREP3D_CONFIG` for whole
volumes). A run folder (``mslesion train`` / ``train3d`` / ``tune``) holds :data:`RUN_CONFIG`,
:data:`ENVIRONMENT`, :data:`HISTORY`, :data:`STATE`, the checkpoints :data:`BEST`,
:data:`FINAL` and :data:`CHOSEN`, :data:`FINAL_EVAL` and :data:`SUMMARY`. Saved run folders
depend on these names: changing one breaks every run written before. Open the folders themselves with
:class:`mslesion.folders.DatasetFolder` and :class:`mslesion.folders.RunFolder`, which check them.
"""

from __future__ import annotations

#: dataset folder: one row per slice (2D) or volume (3D)
MANIFEST = "manifest.csv"
#: dataset folder: patient-level folds, ``{"folds": [{"train": [...], "val": [...], "test": [...]}]}``
SPLITS = "splits.json"
#: dataset folder (2D), and a copy in each run: how the slices were made, so masks can be mapped back
PREP_CONFIG = "prep_config.json"
#: dataset folder (3D): how the whole volumes were normalised
PREP3D_CONFIG = "prep3d_config.json"

#: run folder: the resolved training config
RUN_CONFIG = "config.json"
#: run folder: library versions and devices
ENVIRONMENT = "environment.json"
#: run folder: one row per finished epoch
HISTORY = "history.csv"
#: run folder: resume state (epoch, phase, best score)
STATE = "state.json"
#: run folder: checkpoint of the best validation epoch
BEST = "best.keras"
#: run folder: checkpoint after the last epoch
FINAL = "final.keras"
#: run folder: the checkpoint the run chose (what predict and evaluate load by default)
CHOSEN = "model.keras"
#: run folder: validation scores of the final model in inference mode
FINAL_EVAL = "final_eval.json"
#: run folder: the human-readable summary
SUMMARY = "summary.txt"
#: run folder: the post-processing chosen on the validation patients, which predict and evaluate apply
POSTPROCESS = "postprocess.json"
#: run folder: every setting that choice scored
POSTPROCESS_GRID = "postprocess_grid.csv"
