"""A trained 2D run -> a model other tools can serve: SavedModel, LiteRT (TFLite) or ONNX.

Through Keras 3's ``Model.export``. The export folder holds the artifact, ``preprocessing.json``
(what a slice must look like before it goes in: modalities, normalisation, size, fit, 2.5D
context, crop; the threshold; input and output layout) and ``export.json``, whose
``max_abs_difference`` is measured on export: the exported model and the ``.keras`` one are run on
the same random batch and their probabilities compared (refused above :data:`TOLERANCE`).
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict
from pathlib import Path

import numpy as np

from mslesion import __version__
from mslesion.errors import ExportError
from mslesion.fileio import save_json
from mslesion.infer.inference import check_run, open_run
from mslesion.outputs import output_dir

__all__ = ["FORMATS", "TOLERANCE", "export_run"]

#: our name -> (Keras ``export`` format, artifact name, packages it needs beyond TensorFlow)
FORMATS = {
    "savedmodel": ("tf_saved_model", "saved_model", ()),
    "tflite": ("litert", "model.tflite", ()),
    "onnx": ("onnx", "model.onnx", ("onnx", "tf2onnx", "onnxruntime")),
}
#: largest probability difference accepted between the exported and the Keras model (float32 kernels differ)
TOLERANCE = 1e-4
KIND = "export"


def _run_exported(fmt: str, artifact: Path, x: np.ndarray) -> np.ndarray:
    """Probabilities of the exported artifact on ``x``, loaded as another tool would load it."""
    if fmt == "savedmodel":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(artifact))  # held while serving: its variables die with it
        return np.asarray(loaded.serve(x))
    if fmt == "tflite":
        import tensorflow as tf

        interpreter = tf.lite.Interpreter(model_path=str(artifact))
        inp = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(inp["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        return np.asarray(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
    import onnxruntime

    session = onnxruntime.InferenceSession(str(artifact))
    return np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0])


def export_run(run_dir: str | Path, out_dir: str | Path, fmt: str = "savedmodel", checkpoint: str = "model",
               overwrite: bool = False, seed: int = 0) -> Path:  # fmt: skip
    """Export a run's checkpoint into the new folder ``out_dir``; returns the artifact's path.

    Raises:
        ValueError: an unknown format.
        ExportError: the format needs a package that is not installed (named, with the pip command), or
            the exported model's probabilities differ from the Keras model's by more than
            :data:`TOLERANCE` (nothing is written then).
        RunNotFoundError, DamagedCheckpointError, OutputError: as for ``mslesion predict``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, not {fmt!r}")
    keras_format, name, needs = FORMATS[fmt]
    missing = [p for p in needs if importlib.util.find_spec(p) is None]
    if missing:
        raise ExportError(f"export to {fmt} needs {', '.join(missing)}: pip install {' '.join(missing)}")
    run_dir = Path(run_dir)
    check_run(run_dir, checkpoint)  # cheap checks before the model loads
    run = open_run(run_dir, checkpoint)
    x = np.random.default_rng(seed).normal(size=(2, *run.input_shape)).astype(np.float32)
    expected = np.asarray(run.model.predict(x, verbose=0), np.float32)
    with output_dir(out_dir, KIND, overwrite=overwrite, inputs=[run_dir]) as tmp:
        artifact = tmp / name
        run.model.export(str(artifact), format=keras_format, verbose=False)
        got = _run_exported(fmt, artifact, x)
        if got.size != expected.size:
            raise ExportError(f"{run_dir}: the {fmt} export gives {got.shape} for input {x.shape}, the Keras model "
                              f"{expected.shape}; not written")  # fmt: skip
        diff = float(np.max(np.abs(got.reshape(expected.shape) - expected)))
        if not diff <= TOLERANCE:
            raise ExportError(f"{run_dir}: the {fmt} export gives probabilities up to {diff:.2g} away from the "
                               f"Keras model's (tolerance {TOLERANCE:g}); not written")  # fmt: skip
        save_json(tmp / "preprocessing.json", {
            "input": "float32 (N, H, W, C) slices, prepared as below; C = modalities x 2.5D context",
            "input_shape": list(run.input_shape),
            "output": "float32 (N, H, W, 1) lesion probability; lesion where > threshold",
            "threshold": float(run.config.get("threshold", 0.5)),
            "modalities": list(run.prep.modalities),
            "slicing": asdict(run.prep.slicing()),
            # done while loading, before slicing: a server must register and skull-strip scans the same way
            "loading": {k: getattr(run.prep, k) for k in ("register", "skull_strip")},
            "note": "mslesion.data.slicing.slice_case prepares slices this way; mslesion.data.slicing.to_native_stack maps "
                    "probabilities back to the source grid",
        })  # fmt: skip
        save_json(tmp / "export.json", {
            "run": str(run_dir.resolve()), "checkpoint": run.checkpoint, "format": fmt, "artifact": name,
            "keras_format": keras_format, "max_abs_difference": diff, "tolerance": TOLERANCE,
            "checked_on": f"a random normal batch of 2 (seed {seed})", "mslesion_version": __version__,
        })  # fmt: skip
    return Path(out_dir) / name
