"""The flat module names of before the stage subpackages (issue 12) still import, for one release."""

import importlib
import subprocess
import sys

import pytest

from mslesion.compat import MOVED_ATTRIBUTES, MOVED_MODULES

MOVED = sorted(old for old, new in MOVED_MODULES.items() if isinstance(new, str))
SPLIT = sorted(old for old, new in MOVED_MODULES.items() if isinstance(new, tuple))


@pytest.mark.parametrize("old", MOVED)
def test_old_module_name_is_the_new_module_with_a_warning(old):
    new = importlib.import_module(MOVED_MODULES[old])
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {MOVED_MODULES[old]}"):
        alias = importlib.import_module(old)
    assert alias is new
    assert new.__spec__.name == new.__name__ == MOVED_MODULES[old]  # the move does not rename the real module


@pytest.mark.parametrize("old", SPLIT)
def test_a_split_module_still_offers_every_public_name_of_its_successors(old):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {MOVED_MODULES[old][0]} and "):
        alias = importlib.import_module(old)
    for successor in MOVED_MODULES[old]:
        module = importlib.import_module(successor)
        for name in module.__all__:
            assert getattr(alias, name) is getattr(importlib.import_module(
                next(s for s in MOVED_MODULES[old] if hasattr(importlib.import_module(s), name))), name), name
    with pytest.raises(AttributeError, match="it moved to"):
        alias.no_such_name  # noqa: B018


@pytest.mark.parametrize(("package", "name"), sorted(MOVED_ATTRIBUTES))
def test_moved_attribute_resolves_with_a_warning(package, name):
    module = importlib.import_module(package)
    with pytest.warns(DeprecationWarning, match=f"{package}.{name} moved"):
        value = getattr(module, name)
    assert value is getattr(importlib.import_module(MOVED_ATTRIBUTES[(package, name)]), name)


def test_unknown_names_still_fail():
    import mslesion.models

    with pytest.raises(AttributeError, match="no attribute 'no_such_thing'"):
        mslesion.models.no_such_thing  # noqa: B018
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("mslesion.no_such_module")


def test_old_from_import_form_in_a_fresh_interpreter():
    # `from mslesion import prep` goes through the package attribute, not the finder, in a clean process
    code = ("import warnings; warnings.simplefilter('error')\n"
            "try:\n    from mslesion import prep\nexcept DeprecationWarning as w:\n    print('warned:', w)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "warned: mslesion.prep moved to mslesion.data.prep and mslesion.data.reader" in proc.stdout


def test_the_package_itself_uses_only_new_paths():
    # every module at its new place imports with the "moved to" warning turned into an error
    modules = sorted({m for new in MOVED_MODULES.values() for m in ((new,) if isinstance(new, str) else new)}
                     | {"mslesion.cli", "mslesion.models"})  # fmt: skip
    code = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    proc = subprocess.run([sys.executable, "-W", "error:mslesion.:DeprecationWarning", "-c", code],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
