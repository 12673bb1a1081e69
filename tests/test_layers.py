"""The house's layers, written down once and checked on every run: which folder of mulap may import which.

Read from every `import` in the package, function-local ones included (an import inside a function is still a
dependency). A layer may import itself and the layers listed for it, nothing above it; `mulap` itself (the
package root: the version and the lazy `mulap.load`) may be imported from anywhere.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mulap"

# lowest first; each layer may import the ones it lists (and itself)
ALLOWED = {
    "infra": set(),  # files, paths, configuration and its schema, the experiment folder, interrupts, console
    "audio": {"infra"},  # decoding, folder scans, chunks, the mel front end, augmentation
    "models": {"infra", "audio"},  # networks only (the mel front end is the first layer of Musicnn)
    "data": {"infra", "audio"},  # audiocaption, shards, prepare, the task registry, the dataset readers
    "inference": {"infra", "audio", "models", "data"},  # load, extract, cache, search, tag, HEAR
    "evaluation": {"infra", "audio", "models", "data", "inference"},  # metrics, retrieval, zero-shot, plots
    "training": {"infra", "audio", "models", "data", "inference", "evaluation"},  # Lightning lives here
    "demo": {"infra", "audio", "models", "data", "inference", "evaluation", "training"},  # the world, the pipeline
    "cli": {"infra", "audio", "models", "data", "inference", "evaluation", "training", "demo"},
    "scripts": {"cli"},  # the original's entry points
}
ROOT_MODULES = {"mulap", "mulap.__main__"}  # the package root and `python -m mulap` (which runs the cli)
# documented public names kept stable: each is the inference module itself (sys.modules points at it)
ALIASES = {"mulap.hear": "mulap.inference.hear", "mulap.tagging": "mulap.inference.tagging"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path) -> set[str]:
    """The mulap modules `name` imports (module-level or not), resolved to module names."""
    found = set()
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "mulap"}
        elif isinstance(node, ast.ImportFrom):
            base = (
                ".".join(package[: len(package) - node.level + 1] + [node.module or ""]).strip(".") if node.level else node.module
            )
            if base and base.split(".")[0] == "mulap":
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names}
    return {m for m in found if m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> str | None:
    module = ALIASES.get(module, module)
    return None if module in ROOT_MODULES else module.split(".")[1]


def test_every_folder_of_the_package_has_a_layer():
    assert {_layer(m) for m in MODULES} - {None} <= set(ALLOWED)


def test_the_tests_mirror_the_layers():
    """Each folder of tests/ is named after the layer it tests; only cross-layer tests (docs, layers,
    packaging) sit at the top."""
    tests = Path(__file__).resolve().parent
    folders = {p.parent.name for p in tests.glob("*/test_*.py")}
    assert folders <= set(ALLOWED), f"test folders without a layer: {sorted(folders - set(ALLOWED))}"
    assert {p.name for p in tests.glob("test_*.py")} == {"test_docs.py", "test_layers.py", "test_packaging.py"}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import of `graph` that runs from a layer to one it may not import."""
    return sorted(
        f"{a} -> {b}"
        for a, targets in graph.items()
        for b in targets
        if _layer(a) and _layer(b) and _layer(b) != _layer(a) and _layer(b) not in ALLOWED[_layer(a)]
    )


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of `graph`: every component of more than one module is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def test_no_import_runs_up_a_layer():
    assert upward_imports(GRAPH) == []


def test_no_import_cycle():
    assert import_cycles(GRAPH) == []


@pytest.mark.parametrize("alias,module", sorted(ALIASES.items()))
def test_public_aliases_are_the_modules_themselves(alias, module):
    import importlib

    assert importlib.import_module(alias) is importlib.import_module(module)


def test_the_checker_sees_a_cycle_and_an_upward_import():
    """The checks are not blind: the real graph with one upward import and one cycle added fails both."""
    graph = {name: set(targets) for name, targets in GRAPH.items()}
    assert "mulap.infra.config_schema" in graph["mulap.models.musicnn"]  # the reader sees a real import
    graph["mulap.models.musicnn"].add("mulap.inference.api")  # models -> inference: up a layer
    graph["mulap.infra.files"].add("mulap.infra.paths")
    graph["mulap.infra.paths"].add("mulap.infra.files")  # a cycle inside one layer
    assert upward_imports(graph) == ["mulap.models.musicnn -> mulap.inference.api"]
    assert ["mulap.infra.files", "mulap.infra.paths"] in import_cycles(graph)


@pytest.mark.parametrize(
    "module",
    [
        "mulap.inference",
        "mulap.inference.api",
        "mulap.inference.search",
        "mulap.inference.tagging",
        "mulap.inference.hear",
        "mulap.inference.cache",
    ],
)
def test_inference_loads_no_lightning(module):
    code = (
        f"import sys, {module}, mulap.inference.api as api\n"
        "api.load('random')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')"
        " or m.startswith('mulap.training'))\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_name_imported_from_mulap_exists():
    """A moved module leaves no import pointing at its old home, function-local ones included (they fail only when
    the function runs): every `from mulap... import name` in the package resolves to a module or an attribute."""
    import importlib

    missing = []
    for path in sorted(MODULES.values()):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "mulap":
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if not hasattr(module, alias.name) and f"{node.module}.{alias.name}" not in MODULES:
                        missing.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.module}.{alias.name}")
    assert missing == []
