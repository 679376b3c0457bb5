"""The import graph points one way: ``pipeline.core`` at the bottom, the two stages above it and independent of each
other, the rest of ``pipeline`` on top; and no module imports itself round a cycle, not even from inside a function.

Read from the source with ``ast``, so imports hidden in functions count as much as those at the top of a file.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "stage1_tokenizer", "stage2_prior")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """Every project module that ``name`` imports, anywhere in its file (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            while target and target not in known:  # `from pkg import name`: the module, not the name
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    graph = {name: imported_modules(name, path, known) for name, path in modules.items()}
    # A package's __init__ is imported with any of its modules; it is not an edge of its own module's design.
    return {name: {t for t in targets if not name.startswith(t + ".")} for name, targets in graph.items()}


def layer(module: str) -> str:
    if module == "pipeline.core" or module.startswith("pipeline.core."):
        return "core"
    return module.split(".")[0]


ALLOWED = {
    "core": {"core"},
    "stage1_tokenizer": {"core", "stage1_tokenizer"},
    "stage2_prior": {"core", "stage2_prior"},
    "pipeline": {"core", "stage1_tokenizer", "stage2_prior", "pipeline"},
}


def test_imports_point_down_only():
    wrong = [f"{source} -> {target}" for source, targets in sorted(import_graph().items()) for target in sorted(targets)
             if layer(target) not in ALLOWED[layer(source)]]
    assert not wrong, "imports against the layering:\n  " + "\n  ".join(wrong)


def test_no_import_cycles():
    graph = import_graph()
    cycles, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join(trail[trail.index(target):] + [target]))  # open: on the current trail
            elif target not in state:
                visit(target, trail + [target])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n  " + "\n  ".join(cycles)


def test_the_graph_is_read_from_every_module():
    graph = import_graph()
    assert "pipeline.core.files" in graph and "stage1_tokenizer.quantizers.vq" in graph
    assert "pipeline.core.files" in graph["stage1_tokenizer.hub"]  # a real edge is seen (saving lives here)


STEP_MODULES = {f"pipeline.steps.{name}" for name in ("tokenizer", "tokenize", "prior", "sample", "fid")}


def test_steps_sit_below_the_runner_and_the_cli():
    """A step knows neither the chain that runs it nor the commands: both call the steps, never the other way."""
    graph = import_graph()
    wrong = [f"{source} -> {target}" for source, targets in sorted(graph.items()) for target in sorted(targets)
             if source.startswith("pipeline.steps") and (target == "pipeline.runner" or target.startswith("pipeline.cli"))]
    wrong += [f"{source} -> {target}" for source, targets in sorted(graph.items()) for target in sorted(targets)
              if target.startswith("pipeline.cli") and not source.startswith("pipeline.cli")]
    assert not wrong, "imports against the steps' layering:\n  " + "\n  ".join(wrong)


def test_each_step_stands_alone():
    """Steps share helpers (fingerprints, training set-up) but never import one another."""
    graph = import_graph()
    assert STEP_MODULES <= set(graph)
    wrong = [f"{source} -> {target}" for source in sorted(STEP_MODULES) for target in sorted(graph[source] & STEP_MODULES)]
    assert not wrong, "step modules importing each other:\n  " + "\n  ".join(wrong)
