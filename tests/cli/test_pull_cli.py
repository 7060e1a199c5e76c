"""The `pull` command surface: flags and exit codes that need no network."""

from __future__ import annotations


def test_bad_quant_is_exit_2(run) -> None:
    r = run("pull", "org/m", "--quant", "int3")
    assert r.exit_code == 2
    assert "invalid --quant 'int3'" in r.stderr


def test_bad_repo_is_exit_2(run) -> None:
    r = run("pull", "org/na me")
    assert r.exit_code == 2
    assert "invalid hub repo" in r.stderr


def test_unknown_catalog_id_is_exit_4(run) -> None:
    r = run("pull", "no-such-model-anywhere")
    assert r.exit_code == 4
    assert "unknown model 'no-such-model-anywhere'" in r.stderr


def test_help_lists_the_flags(run) -> None:
    r = run("pull", "--help")
    assert r.exit_code == 0
    for flag in ("--quant", "--force", "--json"):
        assert flag in r.stdout
