"""The layering is a contract: detect <- prune, deploy, analysis <- benchmarks, no circle, no hidden imports.

Read from the source with ``ast`` (nothing is imported): every first-party import, at module level or
inside a function, is an edge between modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("detect", "prune", "deploy", "analysis")
# detect is the ground; prune, deploy and analysis build on it and not on each other, except prune timing
# its models through deploy (DESIGN.md)
ALLOWED = {"detect": {"detect"}, "prune": {"prune", "detect", "deploy"}, "deploy": {"deploy", "detect"},
           "analysis": {"analysis", "detect"}}


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The first-party module an import names (``detect.val.run_eval`` -> ``detect.val``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported first-party module, line, inside a function) for each import in ``module``."""
    tree = ast.parse(MODULES[module].read_text())
    out = []

    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            names = []
            if isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [f"{child.module}.{a.name}" for a in child.names]
            elif isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            for name in names:
                target = _resolve(name) if name.split(".")[0] in PACKAGES else None
                if target and target != module:
                    out.append((target, child.lineno, in_function))
            visit(child, inner)

    visit(tree, False)
    return out


GRAPH = {m: imports(m) for m in MODULES}


def test_each_package_imports_only_its_own_layer_and_below():
    wrong = [f"{m}:{line} imports {t}" for m, edges in GRAPH.items() for t, line, _ in edges
             if t.split(".")[0] not in ALLOWED[m.split(".")[0]]]
    assert not wrong, "upward or sideways imports:\n" + "\n".join(wrong)


# Where an import inside a function is the point: the module is a process of its own that must start light.
LAZY = {"deploy.session_timer": "the timing child: an ONNX Runtime row imports numpy and onnxruntime alone"}


def test_no_first_party_import_hides_inside_a_function():
    hidden = [f"{m}:{line} imports {t} inside a function" for m, edges in GRAPH.items()
              for t, line, inner in edges if inner and m not in LAZY]
    assert not hidden, "\n".join(hidden)


def test_no_import_circle():
    state, stack, circles = {}, [], []

    def walk(m):
        state[m] = "open"
        stack.append(m)
        for t, _, _ in GRAPH[m]:
            if state.get(t) == "open":
                circles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                walk(t)
        stack.pop()
        state[m] = "done"

    for m in MODULES:
        if m not in state:
            walk(m)
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_the_checker_sees_what_it_must():
    """A guard for the guard: known edges are found, with their kind."""
    assert ("detect.evaluate", True) not in {(t, inner) for t, _, inner in GRAPH["detect.val"]}
    assert "detect.evaluate" in {t for t, _, _ in GRAPH["detect.val"]}
    assert "detect.infer.runtimes" in {t for t, _, _ in GRAPH["detect.backend"]}
    assert len(MODULES) > 60
