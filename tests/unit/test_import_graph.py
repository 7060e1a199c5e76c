"""The package's import graph: every module imports on its own, and no circle among the
top-level imports of mlx_stack's modules (a function-level import is how a module reaches
a higher layer on purpose; a circle at the top is a layering bug)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import mlx_stack

SRC = Path(mlx_stack.__file__).parent
PACKAGE = "mlx_stack"


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = (PACKAGE, *path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _targets(node: ast.Import | ast.ImportFrom, mods: dict[str, Path]) -> set[str]:
    """The mlx_stack modules one import statement names."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in mods}
    if node.level or node.module is None:
        return set()  # the package uses absolute imports only
    out: set[str] = set()
    for alias in node.names:
        sub = f"{node.module}.{alias.name}"
        if sub in mods:
            out.add(sub)  # `from mlx_stack.services import routing`
        elif node.module in mods:
            out.add(node.module)
    return out


def _top_level_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the mlx_stack modules it imports at its top (``if TYPE_CHECKING`` excluded:
    those imports never run)."""
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        edges: set[str] = set()
        for node in ast.parse(path.read_text(), str(path)).body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                edges |= _targets(node, mods)
        graph[name] = edges - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp: list[str] = []
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


def test_the_cycle_finder_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_among_top_level_imports() -> None:
    mods = _modules()
    assert "mlx_stack.services.gateway_config" in mods
    assert _cycles(_top_level_graph(mods)) == []


def test_the_gateway_config_module_imports_no_process_code() -> None:
    """It knows files, not processes: no import of service_control or routing, at any level."""
    path = _modules()["mlx_stack.services.gateway_config"]
    named = {f"{n.module}" if isinstance(n, ast.ImportFrom) else a.name
             for n in ast.walk(ast.parse(path.read_text()))
             if isinstance(n, ast.Import | ast.ImportFrom)
             for a in n.names}
    assert not {m for m in named if m and ("service_control" in m or "services.routing" in m)}


def test_every_module_imports_in_a_fresh_interpreter() -> None:
    """Each module on its own, in a new interpreter (an import circle or a missing name
    at import time shows here even when the test run's import order hides it)."""
    names = [m for m in _modules() if not m.endswith("__main__")]
    code = (
        "import importlib, sys\n"
        "bad = []\n"
        f"for name in {names!r}:\n"
        "    for m in [k for k in sys.modules if k == 'mlx_stack' or k.startswith('mlx_stack.')]:\n"
        "        del sys.modules[m]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        bad.append(f'{name}: {type(exc).__name__}: {exc}')\n"
        "print('\\n'.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_the_front_door_process_stays_light() -> None:
    """The gateway imports Paths and core, never the CLI, the services or heavy libraries."""
    code = (
        "import sys, mlx_stack.gateway.app\n"
        "heavy = ('typer', 'rich', 'httpx', 'yaml', 'litellm', 'mlx_stack.services', 'mlx_stack.cli')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
