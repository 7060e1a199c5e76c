from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlx_stack.core.catalog import CatalogError, parse_catalog, parse_entry
from mlx_stack.services.catalog_store import load_catalog, load_dir

CATALOG_DIR = Path(__file__).resolve().parents[2] / "catalog"


def test_every_shipped_file_loads_through_the_package():
    catalog = load_catalog()
    files = sorted(p.stem for p in CATALOG_DIR.glob("*.yaml"))
    assert [e.id for e in catalog] == files
    assert len(catalog) >= 20 and len(catalog.families()) >= 6
    sizes = [e.params_b for e in catalog]
    assert min(sizes) <= 0.5 and max(sizes) >= 70
    assert any(e.is_moe and e.active_params_b < e.params_b for e in catalog)
    assert {"int4", "int8", "bf16"} <= {q for e in catalog for q in e.repos}
    assert all(r.disk_gb > 0 for e in catalog for r in e.repos.values())


def test_measurements_carry_provenance():
    catalog = load_catalog()
    measured = [m for e in catalog for m in e.measured]
    assert len(measured) >= 80  # the stale Qwen3.5-35B-A3B and odd bf16 M5 Max rows are left out
    assert all(m.source and m.machine and m.decode_tok_s > 0 for m in measured)


def test_capabilities_name_vllm_mlx_parsers():
    parsers = {e.capabilities.tool_call_parser for e in load_catalog() if e.capabilities.tool_calling}
    from vllm_mlx.reasoning import list_parsers
    from vllm_mlx.tool_parsers import ToolParserManager

    assert parsers <= set(ToolParserManager.tool_parsers)  # names vllm-mlx registers
    reasoning = {e.capabilities.reasoning_parser for e in load_catalog()} - {None}
    assert reasoning <= set(list_parsers())
    assert any(e.capabilities.vision for e in load_catalog())


def _good() -> dict:
    text = (CATALOG_DIR / "qwen3-8b.yaml").read_text()
    return yaml.safe_load(text)


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.pop("context_length"), "context_length: missing"),
    (lambda d: d.update(params_b="eight"), "params_b: expected float"),
    (lambda d: d["repos"]["int4"].update(repo="not a repo"), "repos.int4.repo"),
    (lambda d: d["repos"].update(int3={"repo": "a/b", "disk_gb": 1}), "repos.int3: unknown quantization"),
    (lambda d: d["capabilities"].update(tool_call_parser=None), "capabilities.tool_call_parser"),
    (lambda d: d.update(tags=["chat", "funny"]), "tags[1]"),
    (lambda d: d.update(architecture="moe", active_params_b=9.0), "active_params_b: larger"),
    (lambda d: d.update(active_params_b=3.0), "active_params_b: a dense model"),
    (lambda d: d["measured"][0].update(quant="bf16"), "measured[0].quant"),
    (lambda d: d.update(surprise=1), "surprise: unknown field"),
    (lambda d: d.update(quality=0.9), "quality:"),
    (lambda d: d.update(gated="no"), "gated: expected bool"),
])
def test_bad_entries_name_file_and_field(mutate, field):
    data = _good()
    mutate(data)
    with pytest.raises(CatalogError) as exc:
        parse_entry(data, "qwen3-8b.yaml")
    assert exc.value.message.startswith("qwen3-8b.yaml: ")
    assert field in exc.value.message
    assert exc.value.exit_code == 3


def test_bad_files_in_a_folder(tmp_path: Path):
    (tmp_path / "broken.yaml").write_text("id: [unclosed\n")
    with pytest.raises(CatalogError, match=r"broken\.yaml line"):
        load_dir(tmp_path)
    (tmp_path / "broken.yaml").unlink()
    data = _good()
    (tmp_path / "other-name.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(CatalogError, match="differs from the file name"):
        load_dir(tmp_path)
    (tmp_path / "other-name.yaml").unlink()
    (tmp_path / "qwen3-8b.yaml").write_text(yaml.safe_dump(data))
    data["id"] = "copy"
    (tmp_path / "copy.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(CatalogError, match="also listed"):
        load_dir(tmp_path)
    with pytest.raises(CatalogError, match="expected a mapping"):
        parse_entry([1, 2], "list.yaml")


def test_parse_catalog_checks_the_files_together_in_name_order():
    good = yaml.safe_dump(_good())
    copy = yaml.safe_dump({**_good(), "id": "copy"})
    with pytest.raises(CatalogError, match=r"^qwen3-8b\.yaml: repos: .* is also listed in copy\.yaml"):
        parse_catalog([("qwen3-8b.yaml", good), ("copy.yaml", copy)])
    assert [e.id for e in parse_catalog([("qwen3-8b.yaml", good)])] == ["qwen3-8b"]
    assert len(parse_catalog([])) == 0


def test_filters_and_lookups():
    catalog = load_catalog()
    assert all(e.family == "llama" for e in catalog.filter(family="LLAMA"))
    assert all("code" in e.tags for e in catalog.filter(tag="code"))
    assert all(e.capabilities.tool_calling for e in catalog.filter(tool_calling=True))
    assert catalog.find_repo("mlx-community/qwen3-8b-4bit") == (catalog.get("qwen3-8b"), "int4")
    from mlx_stack.errors import NotFoundError
    for kwargs in ({"family": "gpt"}, {"tag": "poetry"}):
        with pytest.raises(NotFoundError):
            catalog.filter(**kwargs)
    with pytest.raises(NotFoundError):
        catalog.get("nope")


def test_catalog_covers_current_models_with_checked_repos_and_shapes():
    catalog = load_catalog()
    assert len(catalog) >= 40
    assert len({e.publisher for e in catalog}) >= 10 and len(catalog.families()) >= 10
    ids = {e.id for e in catalog}
    assert {"gpt-oss-20b", "gpt-oss-120b", "qwen3-coder-30b-a3b-instruct", "qwen3-30b-a3b-instruct-2507",
            "glm-4.5-air", "gemma-3-27b-it-qat", "qwen3.6-35b-a3b"} <= ids
    for e in catalog:
        assert e.repo_source, e.id  # where the repos' existence was checked
        if e.is_moe:  # shape recorded: layers and KV heads (or Mamba layers) with a source
            assert e.shape is not None and e.shape.layers and e.shape.source, e.id
            assert e.active_params_b < e.params_b
    experts = [e for e in catalog if e.shape and e.shape.experts]
    assert len(experts) >= 5 and all(e.shape.experts_active <= e.shape.experts for e in experts)


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.update(quality={"score": 50, "benchmark": "x", "source": "nope", "date": "2026"}),
     "quality.source"),
    (lambda d: d.update(quality={"score": 500, "benchmark": "x", "source": "https://a.b", "date": "2026"}),
     "quality.score"),
    (lambda d: d.update(released="April 2025"), "released"),
    (lambda d: d.update(shape={"source": "x", "experts": 8}), "shape.experts"),
])
def test_bad_quality_and_shape_name_the_field(mutate, field):
    data = _good()
    mutate(data)
    with pytest.raises(CatalogError) as exc:
        parse_entry(data, "qwen3-8b.yaml")
    assert field in str(exc.value)
