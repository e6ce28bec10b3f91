"""The package's import graph: no cycles between modules, no module reaching into another's private names."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mslesion"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str) -> list[tuple[str, str | None, int]]:
    """(module imported, name taken from it or None, line) for every import in ``name``, also inside functions."""
    tree = ast.parse(MODULES[name].read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, None, node.lineno) for a in node.names if a.name.startswith("mslesion")]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{name}:{node.lineno}: relative import (the package imports absolutely)"
            if node.module and node.module.startswith("mslesion"):
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    found.append((sub, None, node.lineno) if sub in MODULES else (node.module, a.name, node.lineno))
    return found


def _graph() -> dict[str, set[str]]:
    return {m: {target for target, _, _ in _imports(m) if target in MODULES and target != m} for m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_walk_sees_the_package():
    assert {"mslesion.train.training", "mslesion.evaluate.evaluation", "mslesion.data.prep"} <= set(MODULES)
    assert "mslesion.train.runfolder" in _graph()["mslesion.train.training"]


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    # the package's __init__ files only set up the environment; a cycle through them would be one too
    assert _cycles(_graph()) == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_private_names_taken_from_other_modules(name):
    private = [f"{MODULES[name].relative_to(PACKAGE.parent)}:{line}: {target}.{taken}"
               for target, taken, line in _imports(name)
               if taken and taken.startswith("_") and not taken.startswith("__") and target != name]  # fmt: skip
    assert private == []


#: the stages in the order data flows through them (README, Layout); top-level modules come first
STAGES = ("top", "env", "data", "models", "train", "infer", "evaluate", "report", "study", "cli")
#: imports that point up the list, each for a reason; a new one is a design decision, so it must be added here
UPWARD = {
    ("mslesion.__main__", "mslesion.cli"),  # python -m mslesion
    ("mslesion.env.workspace", "mslesion.data.layouts"),  # the notebooks' working folder describes the data it finds
    ("mslesion.env.workspace", "mslesion.data.reader"),
    ("mslesion.env.workspace", "mslesion.data.splits"),
    ("mslesion.env.workspace", "mslesion.data.synthetic"),
    ("mslesion.train.finish", "mslesion.evaluate.metrics"),  # the training-mode validation Dice uses the same Dice
    ("mslesion.infer.predict", "mslesion.evaluate.lesions"),  # predict counts lesions as the evaluation does
    ("mslesion.report.tables", "mslesion.study.table_6_1"),  # the report names the Table 6.1 models
    ("mslesion.folders", "mslesion.data.splits"),  # a dataset folder's splits.json is read with its disjointness check
}


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else "top"


def test_imports_follow_the_stages_but_for_the_listed_exceptions():
    upward = {(m, t) for m, targets in _graph().items() for t in targets
              if STAGES.index(_stage(t)) > STAGES.index(_stage(m))}  # fmt: skip
    assert upward == UPWARD
