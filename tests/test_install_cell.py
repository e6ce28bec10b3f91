"""The notebooks' install cell, executed for real in fresh kernels in which mslesion is not importable.

The kernels run with ``python -S`` and the environment's site-packages on PYTHONPATH: every
dependency is there, but the editable install of this checkout (a ``.pth`` file) is not, as on a
Kaggle/Colab machine that has never seen mslesion.
"""

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0*.ipynb"))
CHECK = '''import mslesion, mslesion.data.prep
print("IMPORTED", mslesion.__file__)'''


def _cells(path: Path):
    nb = nbformat.read(path, as_version=4)
    (params,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    install = next(c for c in nb.cells if "platform_setup.setup" in c.source)
    return params, install


def test_every_notebook_has_the_same_install_cell_from_tools_make_notebooks():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_notebooks", ROOT / "tools" / "make_notebooks.py")
    source = (ROOT / "tools" / "make_notebooks.py").read_text()
    assert "INSTALL = '''" in source and spec is not None
    installs = {p.name: _cells(p)[1].source for p in NOTEBOOKS}
    assert len(installs) == 4 and len(set(installs.values())) == 1, "install cells differ"
    assert next(iter(installs.values())) in source  # generated from the one definition


@pytest.fixture
def bare_kernel(tmp_path_factory):
    """A kernel spec whose Python has the dependencies but not mslesion; pip installs go to a private folder."""
    base = tmp_path_factory.mktemp("kernel")
    target = base / "pip_target"
    target.mkdir()
    spec = base / "kernels" / "bare"
    spec.mkdir(parents=True)
    site = sysconfig.get_paths()["purelib"]
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-S", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "bare", "language": "python",
        # a read-only source gets no __pycache__ either: as on a Kaggle dataset
        "env": {"PYTHONPATH": f"{target}:{site}", "PYTHONDONTWRITEBYTECODE": "1", "PIP_TARGET": str(target)},
    }))  # fmt: skip
    return base, target


def _run(path: Path, cwd: Path, kernel_dir: Path, **params) -> str:
    nb = nbformat.read(path, as_version=4)
    param_cell, install = _cells(path)
    param_cell = nbformat.from_dict(json.loads(json.dumps(param_cell)))
    param_cell.source += "\n" + "\n".join(f"{k} = {v!r}" for k, v in params.items())
    probe = new_code_cell('import importlib.util\nspec = importlib.util.find_spec("mslesion")\n'
                          'print("BEFORE", "absent" if spec is None else spec.origin or "namespace")')  # fmt: skip
    nb.cells = [param_cell, probe, install, new_code_cell(CHECK)]
    ksm = KernelSpecManager(kernel_dirs=[str(kernel_dir / "kernels")])
    client = NotebookClient(nb, timeout=300, kernel_name="bare", resources={"metadata": {"path": str(cwd)}})
    client.kernel_manager_class.kernel_spec_manager = ksm
    from jupyter_client.manager import KernelManager

    client.km = KernelManager(kernel_name="bare", kernel_spec_manager=ksm)
    client.execute()
    # a print may arrive as several stream messages: join a cell's chunks as they came
    return "\n".join("".join(o.get("text", "") for o in c.get("outputs", [])) for c in nb.cells)


def _read_only_copy(dest: Path) -> Path:
    shutil.copytree(ROOT / "mslesion", dest / "mslesion", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    return dest


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _make_writable(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.mark.slow
@pytest.mark.parametrize("notebook", [p.name for p in NOTEBOOKS])
def test_install_cell_with_a_clone_named_mslesion_in_the_working_folder(notebook, bare_kernel, tmp_path):
    """Colab: ``git clone ... /content/mslesion``, kernel in /content: a bare find_spec sees an empty namespace."""
    kernel_dir, _ = bare_kernel
    clone = _read_only_copy(tmp_path / "content" / "mslesion")
    before = _tree(clone)
    try:
        out = _run(ROOT / "notebooks" / notebook, tmp_path / "content", kernel_dir)
    finally:
        _make_writable(clone)
    assert "BEFORE namespace" in out  # the empty namespace package: what used to make the install cell skip itself
    assert f"IMPORTED {clone / 'mslesion' / '__init__.py'}" in out
    assert f"mslesion from {clone}" in out and "installed: nothing (every dependency was there)" in out
    assert "TensorFlow" in out and "Python" in out
    assert _tree(clone) == before  # nothing written into the source (no egg-info, no build folder)


@pytest.mark.slow
def test_install_cell_with_a_read_only_copy_named_by_mslesion_src(bare_kernel, tmp_path):
    """Kaggle: the repository attached as a dataset, read-only, somewhere under /kaggle/input."""
    kernel_dir, _ = bare_kernel
    copy = _read_only_copy(tmp_path / "input" / "mslesion-src" / "mslesion-main")
    (tmp_path / "working").mkdir()
    try:
        out = _run(NOTEBOOKS[0], tmp_path / "working", kernel_dir, MSLESION_SRC=str(copy))
    finally:
        _make_writable(tmp_path / "input")
    assert "BEFORE absent" in out and f"IMPORTED {copy / 'mslesion' / '__init__.py'}" in out


@pytest.mark.slow
def test_install_cell_pip_installs_a_built_wheel(bare_kernel, tmp_path):
    """A wheel (``python -m build`` / ``pip wheel``) given as MSLESION_PIP: installed, imported, no restart."""
    pytest.importorskip("setuptools", reason="building the wheel without build isolation needs setuptools here")
    kernel_dir, target = bare_kernel
    src = tmp_path / "src"
    shutil.copytree(ROOT / "mslesion", src / "mslesion", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(tmp_path / "dist"), str(src)], capture_output=True, text=True)  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("mslesion-*.whl")
    (tmp_path / "work").mkdir()
    out = _run(NOTEBOOKS[1], tmp_path / "work", kernel_dir, MSLESION_PIP=str(wheel))
    assert f"IMPORTED {target / 'mslesion' / '__init__.py'}" in out and "mslesion from installed package" in out


@pytest.mark.slow
def test_install_cell_says_how_to_get_the_code_when_there_is_none(bare_kernel, tmp_path):
    kernel_dir, _ = bare_kernel
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="mslesion not found: clone the repository"):
        _run(NOTEBOOKS[2], tmp_path / "empty", kernel_dir)
