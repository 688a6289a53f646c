"""The layout is the architecture: folders are layers, imports point down, no cycles.

The import graph is read from the source with ``ast`` (every import, also those inside
functions: a lazy import is still a dependency), so a violation fails here before it
shows up as an import-order bug at run time.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "training")

# Lower ranks are lower layers; a module may import its own rank or below.
LAYERS: tuple[tuple[str, int], ...] = (
    ("pipeline.errors", 0),
    ("pipeline.config", 0),
    ("pipeline.metrics", 0),
    ("pipeline.stopping", 0),
    ("pipeline.engine", 1),
    ("pipeline.kafka_io", 2),
    ("pipeline.localkafka", 2),
    ("pipeline.scorer", 3),
    ("training", 3),
    ("pipeline.commands", 4),
    ("pipeline.cli", 4),
    ("pipeline", 0),  # the package's own __init__ (a version string)
)
KAFKA_CLIENTS = ("kafka", "confluent_kafka")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Every module this file imports (project modules resolved, others by top name)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: _imports(path, name, known) for name, path in mods.items()}


def _rank(module: str) -> int | None:
    for prefix, rank in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return rank
    return None


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_planted_cycle() -> None:
    # The check itself must be able to fail.
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_every_module_has_a_layer() -> None:
    assert [m for m in _graph() if _rank(m) is None] == []


def test_imports_point_down() -> None:
    upward = []
    for module, imported in _graph().items():
        mine = _rank(module)
        assert mine is not None
        for target in imported:
            theirs = _rank(target)
            if theirs is not None and theirs > mine:
                upward.append(f"{module} -> {target}")
    assert upward == []


@pytest.mark.parametrize("layer", ["pipeline.engine", "pipeline.kafka_io", "pipeline.scorer"])
def test_streaming_side_never_imports_torch_or_training(layer: str) -> None:
    bad = [
        f"{m} -> {t}"
        for m, imported in _graph().items()
        if m.startswith(layer)
        for t in imported
        if t.split(".")[0] in ("torch", "training")
    ]
    assert bad == []


def test_engine_imports_no_kafka_client_statically() -> None:
    bad = [
        f"{m} -> {t}"
        for m, imported in _graph().items()
        if m.startswith("pipeline.engine")
        for t in imported
        if t.split(".")[0] in KAFKA_CLIENTS or t.startswith("pipeline.kafka_io")
    ]
    assert bad == []


def test_engine_imports_no_kafka_client_at_run_time() -> None:
    engine = sorted(m for m in _modules() if m.startswith("pipeline.engine"))
    code = (
        "import importlib, sys\n"
        f"for m in {engine!r}: importlib.import_module(m)\n"
        f"print(sorted(k for k in sys.modules if k.split('.')[0] in {KAFKA_CLIENTS!r}"
        " or k.startswith('pipeline.kafka_io') or k == 'torch'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_cli_parser_does_not_import_torch() -> None:
    code = (
        "import sys\nfrom pipeline.cli import build_parser\nbuild_parser()\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
