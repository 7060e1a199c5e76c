"""mlx-stack installed from its wheel, as `uv tool install` / `pipx install` do it.

The wheel is built from a copy of the sources (nothing but what the build reads), then
installed into a fresh virtual environment outside the checkout. Its dependencies come
from this test environment through a .pth file (offline and fast); mlx-stack itself only
from the wheel. Every command runs from an unrelated folder, with the checkout nowhere on
its path, and nothing it prints may point back into the checkout.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

import httpx
import pytest

from mlx_stack import __version__
from mlx_stack.paths import Paths
from mlx_stack.services import stack_store
from mlx_stack.system import ports
from tests.helpers import stack_processes

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BUILD_INPUTS = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "src", "catalog")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    bin: Path
    work: Path  # the folder commands run from
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / "mlx-stack"), *args], cwd=self.work, env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)


def _build_wheel(tmp: Path) -> Path:
    src = tmp / "src-copy"
    src.mkdir()
    for name in BUILD_INPUTS:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(path, src / name)
    out = tmp / "dist"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "--no-index", "--quiet", "-w", str(out), str(src)],
                           capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = out.glob("mlx_stack-*.whl")
    return wheel


def _fresh_venv(root: Path, wheel: Path) -> Path:
    venv.EnvBuilder(with_pip=False, symlinks=True).create(root)
    python = root / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # The dependencies (and pip) of this test environment, reused; mlx-stack is not among
    # them: its editable finder is a .pth of that folder, which Python does not run from here.
    deps = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    Path(site, "_test_deps.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))
    # --ignore-installed: pip sees this environment's editable mlx-stack and must neither
    # skip the wheel nor touch that install.
    done = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index",
                           "--ignore-installed", "--no-compile", "--quiet", str(wheel)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return root


def _dependency_commands(bin_dir: Path) -> None:
    """The `vllm-mlx` and `litellm` commands in the new environment's bin/, run by its own
    interpreter, as an installer writes them (`up` runs them from there)."""
    for dist, name in (("vllm-mlx", "vllm-mlx"), ("litellm", "litellm")):
        (entry,) = [e for e in metadata.distribution(dist).entry_points
                    if e.group == "console_scripts" and e.name == name]
        script = bin_dir / name
        script.write_text(f"#!{bin_dir / 'python'}\nimport sys\nfrom {entry.module} import {entry.attr}\n"
                          f"sys.exit({entry.attr}())\n")
        script.chmod(0o755)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("wheel")
    wheel = _build_wheel(tmp)
    root = _fresh_venv(tmp / "tool-venv", wheel)
    _dependency_commands(root / "bin")
    work = tmp / "elsewhere"
    (work / "user").mkdir(parents=True)
    env = {
        "PATH": f"{root / 'bin'}:/usr/bin:/bin",
        "HOME": str(work / "user"),
        "MLX_STACK_HOME": str(work / "state"),
        "HF_HOME": str(work / "hf"),
        "HF_HUB_OFFLINE": "1",
        "NO_COLOR": "1",
        "COLUMNS": "200",
        "LANG": os.environ.get("LANG", "C.UTF-8"),
    }
    return Installed(wheel, root, root / "bin", work, env)


def _no_checkout(*outputs: str) -> None:
    for out in outputs:
        assert str(REPO) not in out, f"output points into the checkout:\n{out}"


def test_the_wheel_holds_every_package_and_the_catalog(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    packages = sorted(d.relative_to(REPO / "src").as_posix()
                      for d in (REPO / "src" / "mlx_stack").rglob("*") if (d / "__init__.py").is_file())
    for pkg in ["mlx_stack", *packages]:
        assert f"{pkg}/__init__.py" in names, f"{pkg} is not in the wheel"
    for yaml_file in (REPO / "catalog").glob("*.yaml"):
        assert f"mlx_stack/catalog/{yaml_file.name}" in names
    assert "mlx_stack/py.typed" in names
    static = sorted((REPO / "src" / "mlx_stack" / "gateway" / "static").iterdir())
    assert static, "the dashboard's page files are missing from the checkout"
    for page in static:  # the dashboard page the front door serves at /
        assert f"mlx_stack/gateway/static/{page.name}" in names, f"{page.name} is not in the wheel"


def test_the_package_is_imported_from_the_install(installed: Installed) -> None:
    code = "import mlx_stack, mlx_stack.catalog; print(mlx_stack.__file__); print(mlx_stack.catalog.__file__)"
    out = subprocess.run([str(installed.bin / "python"), "-c", code], cwd=installed.work, env=installed.env,
                         capture_output=True, text=True, check=True).stdout
    for line in out.split():
        assert Path(line).is_relative_to(installed.venv), out


def test_the_dashboard_page_loads_from_the_install(installed: Installed) -> None:
    code = ("from mlx_stack.gateway.dashboard import PAGES, _page\n"
            "for name, _ in PAGES.values(): print(name, len(_page(name)))")
    out = subprocess.run([str(installed.bin / "python"), "-c", code], cwd=installed.work, env=installed.env,
                         capture_output=True, text=True, check=True).stdout
    sizes = dict(line.split() for line in out.splitlines())
    assert set(sizes) == {"index.html", "dashboard.js", "dashboard.css"}
    assert all(int(v) > 500 for v in sizes.values())


def test_version(installed: Installed) -> None:
    r = installed.run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"mlx-stack {__version__}"


def test_models_catalog_comes_from_the_package(installed: Installed) -> None:
    r = installed.run("models", "--catalog", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    def is_chat(f: Path) -> bool:  # `--catalog` lists the chat models
        return not any(line.startswith("kind:") and "chat" not in line for line in f.read_text().splitlines())

    chat = [f for f in (REPO / "catalog").glob("*.yaml") if is_chat(f)]
    assert len(data["models"]) == len(chat)
    _no_checkout(r.stdout, r.stderr)


def test_install_dry_run_runs_the_installed_command(installed: Installed) -> None:
    r = installed.run("install", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    program = str(installed.bin / "mlx-stack")
    assert f"{program} watch --standby" in plan["unit"] or f"<string>{program}</string>" in plan["unit"]
    assert plan["unit_file"].startswith(installed.env["HOME"])
    _no_checkout(r.stdout, r.stderr)


def test_the_launchagent_runs_the_installed_command(installed: Installed) -> None:
    code = ("import plistlib; from mlx_stack.paths import paths; from mlx_stack.services import install\n"
            "plan = install.plan(paths(), install.LoginHost(platform='darwin'))\n"
            "print(plistlib.loads(plan.unit_text.encode())['ProgramArguments'][0])")
    out = subprocess.run([str(installed.bin / "python"), "-c", code], cwd=installed.work, env=installed.env,
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(installed.bin / "mlx-stack")


def test_setup_demo_then_up_dry_run_use_the_installed_environment(installed: Installed) -> None:
    r = installed.run("setup", "--demo", "--no-start")
    assert r.returncode == 0, r.stderr
    state = Path(installed.env["MLX_STACK_HOME"])
    assert (state / "stack.yaml").is_file()
    assert sorted(p.name for p in (state / "models").iterdir() if not p.name.startswith(".")) == [
        "demo-fast", "demo-longctx", "demo-standard"]
    r2 = installed.run("up", "--dry-run")
    assert r2.returncode == 0, r2.stderr
    assert f"{installed.bin / 'vllm-mlx'} serve {state / 'models'}" in r2.stdout
    # every program (tiers, gateway, whatever it runs) is this installation's
    commands = [shlex.split(line) for line in r2.stdout.splitlines() if line and not line.startswith("#")]
    assert len(commands) >= 4
    for argv in commands:
        program = next(arg for arg in argv if "=" not in arg)  # past the environment
        assert Path(program).parent == installed.bin, argv
    _no_checkout(r.stdout, r.stderr, r2.stdout, r2.stderr)


def test_doctor_reports_the_installed_package(installed: Installed) -> None:
    r = installed.run("doctor", "--json")
    assert r.returncode in (0, 1), r.stderr  # 1 if this machine fails a check (disk, ...)
    doc = json.loads(r.stdout)
    assert Path(doc["package_dir"]).is_relative_to(installed.venv)
    assert Path(doc["executable"]).parent == installed.bin
    checks = {c["id"]: c for c in doc["checks"]}
    assert checks["packages"]["status"] in ("PASS", "WARN"), checks["packages"]
    assert checks["packages"]["data"]["packages"]["vllm-mlx"]["required"] == "<0.7,>=0.6"
    assert checks["packages"]["data"]["commands"]["litellm"] == str(installed.bin / "litellm")


def test_a_tier_and_the_gateway_run_from_the_install(installed: Installed) -> None:
    """`up` of the installed tool: its vllm-mlx and its gateway, whose hook (the `x-mlx-stack-*`
    headers) can only come from the installed package: no other is on that interpreter's path."""
    state = Paths(Path(installed.env["MLX_STACK_HOME"]))
    if not state.stack_file.exists():
        assert installed.run("setup", "--demo", "--no-start").returncode == 0
    stack = stack_store.load(state)  # free ports, never 4000/8100
    tiers = tuple(replace(t, port=ports.free_port()) for t in stack.tiers)
    gateway = replace(stack.gateway, port=ports.free_port())
    stack_store.save(state, replace(stack, tiers=tiers, gateway=gateway))
    try:
        r = installed.run("up", "--tier", "fast", timeout=400)
        assert r.returncode == 0, r.stderr
        key = (state.secrets_dir / "gateway-key").read_text().strip()
        endpoint = f"http://127.0.0.1:{stack_store.load(state).gateway.port}/v1"
        reply = httpx.post(f"{endpoint}/chat/completions", headers={"Authorization": f"Bearer {key}"},
                           json={"model": "fast", "max_tokens": 4,
                                 "messages": [{"role": "user", "content": "hi"}]}, timeout=120)
        assert reply.status_code == 200 and reply.json()["choices"], reply.text
        assert reply.headers["x-mlx-stack-tier"] == "fast"
        programs = {Path(p.cmdline()[0]).parent for p in stack_processes(state)
                    if "logwriter" not in " ".join(p.cmdline())}
        assert programs == {installed.bin}, programs
    finally:
        installed.run("down", timeout=120)
        for proc in stack_processes(state):  # a safety net: never leave servers behind
            proc.kill()
