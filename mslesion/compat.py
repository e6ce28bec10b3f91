"""Old import paths, kept for one release: the flat modules before the stage subpackages (issue 12).

``import mslesion.prep`` (or ``from mslesion import prep``) still works and gives the very module
now at its new place (``mslesion.data.prep``), with a DeprecationWarning naming the new path. A module
that was split (``mslesion.training`` into ``mslesion.train.training``, ``.config``, ``.runfolder``...)
comes back as a stand-in whose names are looked up in its successors, in order. This table is the one place the old names live; saved ``.keras`` run folders do
not depend on it (their custom objects are looked up by registered name, not module path).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

__all__ = ["MOVED_MODULES", "MOVED_ATTRIBUTES", "install", "moved_attribute"]

#: old module -> new module, or the modules it was split into (names are looked up in that order)
MOVED_MODULES = {
    "mslesion.platform_setup": "mslesion.env.platform_setup",
    "mslesion.workspace": "mslesion.env.workspace",
    "mslesion.quiet_import": "mslesion.env.quiet_import",
    "mslesion.cohort": ("mslesion.data.cohort", "mslesion.data.case", "mslesion.data.layouts"),
    "mslesion.volumes": "mslesion.data.volumes",
    "mslesion.loading": "mslesion.data.loading",
    "mslesion.intensity": "mslesion.data.intensity",
    "mslesion.geometry": "mslesion.data.geometry",
    "mslesion.slicing": "mslesion.data.slicing",
    "mslesion.splits": "mslesion.data.splits",
    "mslesion.prep": ("mslesion.data.prep", "mslesion.data.reader"),
    "mslesion.synthetic": "mslesion.data.synthetic",
    "mslesion.training": ("mslesion.train.training", "mslesion.train.config", "mslesion.train.budget",
                          "mslesion.train.history", "mslesion.train.runfolder", "mslesion.train.resume",
                          "mslesion.train.finish", "mslesion.configs"),
    "mslesion.training3d": ("mslesion.train.training3d", "mslesion.evaluate.evaluation3d"),
    "mslesion.datasets": "mslesion.train.datasets",
    "mslesion.patches": ("mslesion.train.patches", "mslesion.data.volumes3d", "mslesion.infer.sliding_window"),
    "mslesion.augmentation": "mslesion.train.augmentation",
    "mslesion.checkpoints": "mslesion.train.checkpoints",
    "mslesion.tensorboard_logs": "mslesion.train.tensorboard_logs",
    "mslesion.losses": "mslesion.train.losses",
    "mslesion.keras_metrics": "mslesion.train.keras_metrics",
    "mslesion.batchnorm": "mslesion.train.batchnorm",
    "mslesion.runtime": "mslesion.train.runtime",
    "mslesion.tuning": "mslesion.train.tuning",
    "mslesion.inference": "mslesion.infer.inference",
    "mslesion.tta": "mslesion.infer.tta",
    "mslesion.predict": ("mslesion.infer.predict", "mslesion.infer.inputs"),
    "mslesion.export": "mslesion.infer.export",
    "mslesion.metrics": "mslesion.evaluate.metrics",
    "mslesion.volume_metrics": "mslesion.evaluate.volume_metrics",
    "mslesion.lesions": "mslesion.evaluate.lesions",
    "mslesion.evaluation": ("mslesion.evaluate.evaluation", "mslesion.evaluate.config", "mslesion.evaluate.loop",
                            "mslesion.evaluate.summary"),
    "mslesion.report_tables": ("mslesion.report.tables", "mslesion.report.eval_tables"),
    "mslesion.figures": ("mslesion.report.figures", "mslesion.report.plotting", "mslesion.report.curves"),
    "mslesion.experiments": ("mslesion.study.experiments", "mslesion.study.recipes", "mslesion.study.inputs"),
    "mslesion.demo": "mslesion.study.demo",
    "mslesion.models.report_table": "mslesion.study.table_6_1",
}
#: (old package, name) -> new module holding that name: names whose old module is now a package
MOVED_ATTRIBUTES = {
    **{("mslesion.models", n): "mslesion.study.table_6_1" for n in ("REPORT_MODELS", "build_report_model",
                                                                    "report_models", "ReportModel")},
    # mslesion.report was the report builder and is now the report/ package
    **{("mslesion.report", n): "mslesion.report.build" for n in ("ReportConfig", "build_report", "write_table",
                                                                  "dataset_figures", "attention_figure")},
}


def _warn(old: str, new: str) -> None:
    warnings.warn(f"{old} moved to {new}; the old name goes in the next release", DeprecationWarning, stacklevel=3)


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module name and hands back the module at its new place (the same object)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        new = MOVED_MODULES[spec.name]
        if isinstance(new, tuple):
            _warn(spec.name, " and ".join(new))
            return _SplitModule(spec.name, new)
        _warn(spec.name, new)
        module = importlib.import_module(new)
        self._spec = module.__spec__  # the import machinery overwrites __spec__ on the module it is handed
        return module

    def exec_module(self, module):
        if not isinstance(module, _SplitModule):
            module.__spec__ = self._spec


class _SplitModule(types.ModuleType):
    """Stand-in for a module that was split: its names are those of its successors."""

    def __init__(self, name: str, successors: tuple[str, ...]):
        super().__init__(name, f"moved to {', '.join(successors)}")
        self.__successors = successors

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        for successor in self.__successors:
            module = importlib.import_module(successor)
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r} (it moved to {self.__successors})")


def install() -> None:
    """Put the alias finder on ``sys.meta_path`` (once); ``import mslesion`` calls this."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())


def moved_attribute(package: str, name: str):
    """Module ``__getattr__`` helper: the moved ``name`` of ``package``, with a warning, or AttributeError."""
    new = MOVED_ATTRIBUTES.get((package, name))
    if new is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    _warn(f"{package}.{name}", f"{new}.{name}")
    return getattr(importlib.import_module(new), name)
