"""harness/ has no import cycles: every module's imports (top level or inside a function) form a DAG.

Read with ``ast`` rather than by importing, so a lazy import inside a function counts too:
round 1's cli.py and launch.py imported each other that way (cli -> launch to register the
command, launch -> cli for the private ``_given``), which worked only by the luck of
import order.
"""
from __future__ import annotations

import ast
from pathlib import Path

HARNESS = Path(__file__).resolve().parents[1] / "harness"


def _modules(root: Path) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def import_graph(root: Path = HARNESS) -> dict[str, set[str]]:
    """module -> the harness modules it imports (``from pkg import sub`` counts as pkg.sub)."""
    modules = _modules(root)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            graph[mod].update(t for t in targets if t in modules and t != mod)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search, white/grey/black)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_harness_has_no_import_cycle():
    graph = import_graph()
    assert "harness.errors" in graph["harness.cli"] and "harness.config" in graph["harness.train.session"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_check_finds_round_one_cycle(tmp_path):
    """The checker itself: cli <-> launch through function-level imports, as in round 1."""
    pkg = tmp_path / "harness"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "cli.py").write_text("def f():\n    from harness.launch import add_launch_parser\n")
    (pkg / "launch.py").write_text("def g():\n    from harness import cli\n    return cli._given\n")
    assert find_cycle(import_graph(pkg)) == ["harness.cli", "harness.launch", "harness.cli"]
