"""stack.yaml's parsed twin (generated/stack.yaml.json): taken only for the very same
text, so a hand edit, a damaged twin or YAML that JSON cannot hold never changes what
a load returns; and with it a load does not import PyYAML."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mlx_stack.core import yaml_text
from mlx_stack.core.stack import parse_stack
from mlx_stack.errors import MlxStackError
from mlx_stack.paths import Paths
from mlx_stack.services import stack_store
from tests.unit.test_stack_model import _data

TWIN = stack_store.PARSED_FILE


@pytest.fixture
def p(isolated_home: Paths) -> Paths:
    stack_store.save(isolated_home, parse_stack(_data(), "stack.yaml"))
    return isolated_home


def _no_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a: object, **_k: object) -> object:
        raise AssertionError("parsed the YAML again")

    monkeypatch.setattr(stack_store, "parse_yaml", refuse)


def test_save_keeps_the_twin_and_load_takes_it(p: Paths, monkeypatch: pytest.MonkeyPatch):
    assert (p.generated_dir / TWIN).is_file()
    fresh = stack_store.load(p)
    assert oct((p.generated_dir / TWIN).stat().st_mode & 0o777) == "0o600"
    _no_yaml(monkeypatch)
    assert stack_store.load(p) == fresh


def test_a_load_through_the_twin_imports_no_yaml(p: Paths):
    stack_store.load(p)
    code = ("import sys; from mlx_stack.services import stack_store; from mlx_stack.paths import paths; "
            "stack_store.load(paths()); print('yaml' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_hand_edit_is_read_from_the_yaml(p: Paths, monkeypatch: pytest.MonkeyPatch):
    stack_store.load(p)
    text = p.stack_file.read_text().replace("fast", "quick")
    p.stack_file.write_text(text)
    assert "quick" in stack_store.load(p).tier_names
    _no_yaml(monkeypatch)  # and the twin now follows the edit
    assert "quick" in stack_store.load(p).tier_names


@pytest.mark.parametrize("twin", ["", "{", "[1]", '{"text": 1, "data": {}}', '{"data": {"schema": 99}}'])
def test_a_damaged_twin_is_passed_over(p: Paths, twin: str):
    fresh = stack_store.load(p)
    (p.generated_dir / TWIN).write_text(twin)
    assert stack_store.load(p) == fresh


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_something_else_in_the_twins_place_never_hangs_a_load(p: Paths, kind: str):
    fresh = stack_store.load(p)
    twin = p.generated_dir / TWIN
    twin.unlink()
    if kind == "fifo":
        os.mkfifo(twin)  # (a plain read would wait for a writer for ever)
    else:
        twin.mkdir()
    assert stack_store.load(p) == fresh


def test_a_twin_of_other_text_is_passed_over(p: Paths):
    fresh = stack_store.load(p)
    kept = json.loads((p.generated_dir / TWIN).read_text())
    kept["text"] += "\n# changed\n"
    kept["data"]["tiers"] = []
    (p.generated_dir / TWIN).write_text(json.dumps(kept))
    assert stack_store.load(p) == fresh


def test_yaml_json_cannot_hold_keeps_no_twin(p: Paths):
    assert stack_store.json_copy({"at": __import__("datetime").date(2026, 12, 7)}) is None
    assert stack_store.json_copy({1: "a"}) is None  # the key would come back as text
    assert stack_store.json_copy({"a": [1, 2.5, None, True]}) == {"a": [1, 2.5, None, True]}


@pytest.mark.parametrize("tail", ["schema_extra: 2026-12-07\n", "tiers: 5\n"])
def test_a_refused_load_keeps_nothing(p: Paths, tail: str):
    (p.generated_dir / TWIN).unlink()
    p.stack_file.write_text(p.stack_file.read_text() + tail)
    with pytest.raises(MlxStackError):
        stack_store.load(p)
    assert not (p.generated_dir / TWIN).exists()
    assert yaml_text.parse_yaml(tail, "x", "y") is not None


def test_a_broken_yaml_is_still_an_error_naming_the_line(p: Paths):
    stack_store.load(p)
    p.stack_file.write_text(p.stack_file.read_text() + "tiers: [\n")
    with pytest.raises(Exception, match="line"):
        stack_store.load(p)


def test_an_unwritable_generated_folder_still_loads(p: Paths):
    (p.generated_dir / TWIN).unlink(missing_ok=True)
    for f in p.generated_dir.iterdir():
        f.unlink()
    p.generated_dir.rmdir()
    p.generated_dir.write_text("not a folder")
    assert stack_store.load(p).tier_names
