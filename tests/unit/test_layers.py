"""The layer rules DEVELOPING.md and CONTRIBUTING.md state, checked on the source.

Each rule is read off the import statements (``ast``, lazy imports inside functions
included; imports under ``if TYPE_CHECKING:`` are types only and do not count), and
where it is about what a process loads, in a fresh interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import mlx_stack

PACKAGE = Path(mlx_stack.__file__).parent


@dataclass(frozen=True)
class Import:
    module: str  # "os", "mlx_stack.system.fs", "huggingface_hub.errors.GatedRepoError"
    file: Path
    line: int
    top_level: bool  # at module level (not inside a function)

    def __str__(self) -> str:
        return f"{self.file.relative_to(PACKAGE.parent)}:{self.line} imports {self.module}"


class _Imports(ast.NodeVisitor):
    def __init__(self, file: Path) -> None:
        self.file = file
        self.found: list[Import] = []
        self._depth = 0

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_If(self, node: ast.If) -> None:
        if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
            self.generic_visit(node)  # TYPE_CHECKING blocks hold types only
        else:
            for stmt in node.orelse:
                self.visit(stmt)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append(Import(alias.name, self.file, node.lineno, self._depth == 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:  # relative: the package itself
            base = ".".join(self.file.relative_to(PACKAGE.parent).with_suffix("").parts[:-node.level])
            module = f"{base}.{node.module}" if node.module else base
        else:
            module = node.module or ""
        for alias in node.names:
            self.found.append(Import(f"{module}.{alias.name}", self.file, node.lineno, self._depth == 0))


def _files(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).rglob("*.py"))


def imports(layer: str) -> list[Import]:
    out: list[Import] = []
    for file in _files(layer):
        visitor = _Imports(file)
        visitor.visit(ast.parse(file.read_text(), str(file)))
        out += visitor.found
    return out


def _is(module: str, names: tuple[str, ...]) -> bool:
    return any(module == n or module.startswith(n + ".") for n in names)


def offenders(layer: str, banned: tuple[str, ...]) -> list[str]:
    return [str(i) for i in imports(layer) if _is(i.module, banned)]


def loaded_by(statement: str, modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has loaded after ``statement``."""
    code = (f"import sys\n{statement}\n"
            f"print(' '.join(m for m in {modules!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=True)
    return done.stdout.split()


# --- core/: pure logic, no I/O ---------------------------------------------------------------

# What touches the OS, the network or the accelerator; core/ imports none of it.
OS_FACING = ("subprocess", "socket", "fcntl", "signal", "shutil", "tempfile", "threading",
             "multiprocessing", "select", "http", "urllib.request", "httpx", "psutil",
             "huggingface_hub", "mlx", "mlx_lm", "uvicorn")


def test_core_imports_no_other_layer_and_nothing_that_touches_the_os() -> None:
    other_layers = ("mlx_stack.system", "mlx_stack.services", "mlx_stack.gateway", "mlx_stack.cli")
    assert offenders("core", other_layers + OS_FACING) == []


def test_core_uses_os_only_for_path_strings() -> None:
    """``os.path`` string handling is pure; anything else of ``os`` is not."""
    found = []
    for file in _files("core"):
        for node in ast.walk(ast.parse(file.read_text())):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id == "os" and node.attr != "path"):
                found.append(f"{file.name}:{node.lineno} os.{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module == "os":
                found.append(f"{file.name}:{node.lineno} from os import ...")
    assert found == []


# Path and file-object calls that reach the disk (str.replace and friends are not listed).
_FILE_IO = frozenset({"read_text", "write_text", "read_bytes", "write_bytes", "iterdir", "glob", "rglob",
                      "mkdir", "unlink", "rmdir", "touch", "stat", "exists", "is_file", "is_dir"})


def _file_io_in_core() -> list[str]:
    found = []
    for file in _files("core"):
        for node in ast.walk(ast.parse(file.read_text())):
            if not isinstance(node, ast.Call):
                continue
            if isinstance(node.func, ast.Name) and node.func.id == "open":
                found.append(f"{file.name}:{node.lineno} open()")
            elif isinstance(node.func, ast.Attribute) and node.func.attr in _FILE_IO:
                found.append(f"{file.name}:{node.lineno} .{node.func.attr}()")
    return found


def test_core_reads_and_writes_no_files() -> None:
    assert _file_io_in_core() == []


def test_core_loads_nothing_that_touches_the_os() -> None:
    statement = ("import importlib, pkgutil, mlx_stack.core as c\n"
                 "for m in pkgutil.iter_modules(c.__path__):\n"
                 "    importlib.import_module('mlx_stack.core.' + m.name)")
    assert loaded_by(statement, ("mlx_stack.system", "mlx_stack.services", "httpx", "psutil",
                                 "huggingface_hub", "mlx", "subprocess", "socket")) == []


# --- system/: the bottom layer ------------------------------------------------------------------

def test_system_builds_on_no_other_layer() -> None:
    layers = ("mlx_stack.core", "mlx_stack.services", "mlx_stack.gateway", "mlx_stack.cli")
    assert offenders("system", layers) == []


# --- gateway/: uvicorn and httptools; never httpx, Typer, Rich, LiteLLM or mlx -----------------

GATEWAY_NEVER = ("httpx", "typer", "click", "rich", "litellm", "mlx", "mlx_lm", "huggingface_hub",
                 "mlx_stack.cli")


def test_gateway_never_imports_httpx_typer_rich_litellm_or_mlx() -> None:
    assert offenders("gateway", GATEWAY_NEVER) == []


def test_the_data_plane_reaches_no_control_plane_module_at_any_level() -> None:
    """Not even inside a function: the front door starts and stops tiers through the
    launcher seam (system/launcher.py), never through services/ (what it has loaded after
    a real cold start is checked in tests/integration/test_on_demand_live.py)."""
    assert offenders("gateway", ("mlx_stack.services",)) == []


def test_the_front_door_process_starts_without_them() -> None:
    assert loaded_by("import mlx_stack.gateway.__main__, mlx_stack.gateway.app",
                     (*GATEWAY_NEVER, "mlx_stack.services", "psutil")) == []


# --- cli/: thin, domain code imported inside the command functions ----------------------------

def test_cli_modules_import_domain_code_inside_the_commands() -> None:
    """Commands (and the app around them) import no domain code at module level; a view,
    itself imported by a command when it runs, may import core/ (pure, light) but never
    services/, system/ or the gateway."""
    top = []
    for i in imports("cli"):
        banned = ("mlx_stack.services", "mlx_stack.system", "mlx_stack.gateway")
        if not i.file.name.endswith("_view.py"):
            banned += ("mlx_stack.core",)
        if i.top_level and _is(i.module, banned):
            top.append(str(i))
    assert top == []


def test_help_and_version_load_no_heavy_library() -> None:
    assert loaded_by("import mlx_stack.cli.main", ("httpx", "huggingface_hub", "litellm", "mlx", "mlx_lm",
                                                   "psutil", "rich", "yaml")) == []


# --- services/: use cases; the OS through system/ ---------------------------------------------

SERVICES_NEVER = ("subprocess", "fcntl", "socket", "signal", "httpx", "psutil", "huggingface_hub")


def test_services_leave_the_os_to_system() -> None:
    assert offenders("services", SERVICES_NEVER) == []


def test_only_system_hub_imports_huggingface_hub() -> None:
    found = [str(i) for layer in ("core", "services", "gateway", "cli", "system") for i in imports(layer)
             if _is(i.module, ("huggingface_hub",)) and i.file != PACKAGE / "system" / "hub.py"]
    assert found == []
