"""Make a notebook kernel ready for mslesion on Kaggle, Colab or a laptop, without a restart.

The notebooks' install cell (the same in each, written by ``tools/make_notebooks.py``)
puts the source on ``sys.path`` (a clone or a read-only copy such as a Kaggle
dataset: nothing is written into it) or pip-installs a wheel or git URL, then
calls :func:`setup`, which installs only the dependencies the platform lacks.

The platform's own TensorFlow, Keras and OpenCV (and NumPy, which TensorFlow is
built against) are never installed, upgraded or downgraded: pip runs with
constraints pinning the versions found, and its plan (``pip install --dry-run
--report``) is checked before anything is installed. Versions outside what the
project supports are a warning, not a change. Uses the standard library and
``packaging`` only: it runs before the dependencies are there.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import json
import os
import re
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

#: Distributions a platform ships and mslesion must not change (pip names, normalised).
PLATFORM_OWNED = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel", "tf-nightly", "keras",
                  "tf-keras", "opencv-python", "opencv-python-headless", "opencv-contrib-python",
                  "opencv-contrib-python-headless", "numpy")  # fmt: skip
#: Any one of these provides ``cv2``; the project lists the headless one.
OPENCV_VARIANTS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")
#: What the project is tested with (README); outside it is a warning.
SUPPORTED = {"python": ">=3.10", "tensorflow": ">=2.16", "keras": ">=3.10"}


class SetupError(RuntimeError):
    """The kernel cannot be made ready (pip's plan would change the platform, or pip failed)."""


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def project_requirements(source: str | Path | None = None) -> list[str]:
    """The package's dependencies: from ``pyproject.toml`` in ``source``, else from the installed metadata."""
    if source is not None and (Path(source) / "pyproject.toml").is_file():
        text = (Path(source) / "pyproject.toml").read_text()
        try:
            import tomllib

            return list(tomllib.loads(text)["project"]["dependencies"])
        except ModuleNotFoundError:  # Python 3.10: the list is simple enough to read directly
            block = re.search(r"^dependencies\s*=\s*\[(.*?)\]", text, re.S | re.M)
            return re.findall(r'"([^"]+)"', block.group(1)) if block else []
    requires = metadata.requires("mslesion") or []
    return [r for r in requires if "extra ==" not in r]


def missing_requirements(requirements: list[str]) -> list[str]:
    """The requirements not installed at all. Installed but another version: left alone (see :func:`version_warnings`).

    Any OpenCV variant satisfies an OpenCV requirement.
    """
    from packaging.requirements import Requirement

    missing = []
    for text in requirements:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = _norm(req.name)
        if name in OPENCV_VARIANTS:
            found = any(installed_version(v) for v in OPENCV_VARIANTS)
        else:
            found = installed_version(name) is not None
        if not found:
            missing.append(text)
    return missing


def platform_constraints() -> list[str]:
    """``name==version`` for every platform-owned distribution that is installed."""
    return [f"{name}=={version}" for name in PLATFORM_OWNED if (version := installed_version(name))]


def version_warnings(versions: dict[str, str | None]) -> list[str]:
    """One line per version outside :data:`SUPPORTED` (``versions``: python/tensorflow/keras -> version or None)."""
    from packaging.specifiers import SpecifierSet

    lines = []
    for name, spec in SUPPORTED.items():
        found = versions.get(name)
        if found is None:
            if name == "tensorflow":
                lines.append("TensorFlow is not installed: the models need it (pip install tensorflow)")
            continue
        if found not in SpecifierSet(spec):
            lines.append(f"{name} {found} is outside what mslesion supports ({name}{spec}); "
                         "expect errors, or use a platform image with newer versions")  # fmt: skip
    return lines


def planned_changes(report: dict, installed: dict[str, str] | None = None) -> list[str]:
    """What a ``pip install --dry-run --report`` JSON would do to the installed platform-owned distributions.

    ``installed``: platform-owned name -> version (default: what is installed here). A platform-owned
    package that is absent may be installed; one that is there may not be replaced, nor a second OpenCV added.
    """
    if installed is None:
        installed = {n: v for n in PLATFORM_OWNED if (v := installed_version(n))}
    has_opencv = any(n in OPENCV_VARIANTS for n in installed)
    changes = []
    for item in report.get("install", []):
        name, version = _norm(item["metadata"]["name"]), item["metadata"]["version"]
        if name in installed or (name in OPENCV_VARIANTS and has_opencv):
            changes.append(f"{name} {installed.get(name, '(another OpenCV is installed)')} -> {version}")
    return changes


def _pip(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)


def install(packages: list[str], dry_run: bool = False) -> list[str]:
    """pip-install ``packages`` with the platform pinned; returns ``name version`` of what was (or would be) installed.

    Raises:
        SetupError: pip's plan would change a platform-owned package, or pip failed.
    """
    if not packages:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "platform-constraints.txt"
        constraints.write_text("\n".join(platform_constraints()) + "\n")
        report_file = Path(tmp) / "plan.json"
        plan = _pip(["install", "--dry-run", "--quiet", "--report", str(report_file), "-c", str(constraints),
                     *packages])  # fmt: skip
        if plan.returncode != 0:
            raise SetupError(f"pip cannot install {' '.join(packages)} beside this platform's packages: "
                             f"{_last_line(plan.stderr)}")  # fmt: skip
        report = json.loads(report_file.read_text())
        changes = planned_changes(report)
        if changes:
            raise SetupError(f"installing {' '.join(packages)} would change the platform's {', '.join(changes)}; "
                             "nothing was installed")  # fmt: skip
        planned = [f"{i['metadata']['name']} {i['metadata']['version']}" for i in report.get("install", [])]
        if dry_run:
            return planned
        done = _pip(["install", "--quiet", "-c", str(constraints), *packages])
        if done.returncode != 0:
            raise SetupError(f"pip install {' '.join(packages)} failed: {_last_line(done.stderr)}")
    importlib.invalidate_caches()
    return planned


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


def accelerators() -> list[str]:
    """What this machine offers: GPUs with their memory (nvidia-smi), a TPU, or nothing (CPU)."""
    found = []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)  # fmt: skip
        found += [f"GPU {line.strip()}" for line in out.stdout.splitlines() if line.strip()]
    except (OSError, subprocess.SubprocessError):
        pass
    if os.environ.get("COLAB_TPU_ADDR") or os.environ.get("TPU_NAME") or list(Path("/dev").glob("accel*")):
        found.append("TPU")
    return found


def platform_versions() -> dict[str, str | None]:
    tf = installed_version("tensorflow") or installed_version("tensorflow-cpu") or installed_version("tf-nightly")
    return {"python": ".".join(map(str, sys.version_info[:3])), "tensorflow": tf, "keras": installed_version("keras")}


def setup(source: str | Path | None = None, dry_run: bool = False, quiet: bool = False) -> dict:
    """Install what the platform lacks and say what was found; returns the record printed.

    Args:
        source: the repository folder the package was found in (its ``pyproject.toml``
            lists the dependencies), or None for an installed package.
        dry_run: only say what would be installed.
    """
    requirements = project_requirements(source)
    missing = missing_requirements(requirements)
    installed = install(missing, dry_run=dry_run)
    versions = platform_versions()
    record = {"source": str(source) if source else "installed package", "missing": missing,
              "installed": installed, "dry_run": dry_run, **versions, "accelerators": accelerators() or ["CPU only"],
              "warnings": version_warnings(versions)}  # fmt: skip
    if not quiet:
        print(f"mslesion from {record['source']}")
        verb = "would install" if dry_run else "installed"
        print(f"{verb}: {', '.join(installed) if installed else 'nothing (every dependency was there)'}")
        print(f"Python {versions['python']}, TensorFlow {versions['tensorflow']}, Keras {versions['keras']}; "
              f"{'; '.join(record['accelerators'])}")  # fmt: skip
    for line in record["warnings"]:
        warnings.warn(line, stacklevel=2)
    return record
