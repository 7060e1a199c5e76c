"""The model catalog: one YAML file per model, validated at load (pure: reads no file).

Public API (stable; other commands build on it):
    parse_entry(data, source) -> CatalogEntry      one file's mapping (raises CatalogError)
    parse_file(text, source) -> CatalogEntry       one file's text, named ``<id>.yaml``
    parse_catalog(files) -> Catalog                (name, text) of every file, checked together
    Catalog.get(id) / .filter(family=, tag=, tool_calling=) / .families() / .tags()

The files are read by :mod:`mlx_stack.services.catalog_store`: ``load_catalog()`` (the
shipped catalog, package ``mlx_stack.catalog``) and ``load_dir(path)`` (tests, overrides).

Errors name the file and the field: ``qwen3-8b.yaml: repos.int4.repo: expected a
Hugging Face repo id like org/name``. The schema is documented in DEVELOPING.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import PurePath
from typing import cast

from mlx_stack.core.validate import Fields, in_file
from mlx_stack.core.yaml_text import parse_yaml
from mlx_stack.errors import NotFoundError, StateError

QUANT_BITS = {"int4": 4.5, "int6": 6.5, "int8": 8.5, "bf16": 16.0}  # MLX, group size 64
ARCHITECTURES = ("dense", "moe")
ATTENTION = ("full", "sliding-window", "hybrid-linear", "hybrid-mamba")
TAGS = ("chat", "code", "reasoning", "vision", "small", "long-context", "moe")
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_ID = re.compile(r"^[a-z0-9][a-z0-9.-]*$")


class CatalogError(StateError):
    """A catalog file breaks the schema (exit code 3)."""


@dataclass(frozen=True)
class RepoRef:
    quant: str
    repo: str
    disk_gb: float


@dataclass(frozen=True)
class Measurement:
    """A measured speed with its provenance (which benchmark, which machine)."""

    quant: str
    chip: str
    gpu_cores: int | None
    memory_gb: int
    machine: str
    decode_tok_s: float
    prefill_tok_s: float | None
    peak_memory_gib: float | None
    source: str


@dataclass(frozen=True)
class KvCache:
    layers: int
    kv_heads: int
    head_dim: int
    full_attention_layers: int | None = None  # the rest use the sliding window
    sliding_window: int | None = None


@dataclass(frozen=True)
class QualityScore:
    """A published aggregate score with its provenance (a leaderboard or a model card)."""

    score: float  # 0-100
    benchmark: str
    source: str  # URL
    date: str  # when the source was published or retrieved


@dataclass(frozen=True)
class Shape:
    """The layout of a mixture-of-experts or hybrid-attention model, with its source."""

    source: str
    layers: int | None = None
    kv_heads: int | None = None
    experts: int | None = None
    experts_active: int | None = None
    full_attention_layers: int | None = None


@dataclass(frozen=True)
class Capabilities:
    tool_calling: bool
    tool_call_parser: str | None  # a vllm-mlx --tool-call-parser name
    reasoning_parser: str | None  # a vllm-mlx --reasoning-parser name
    vision: bool


KINDS = ("chat", "embedding", "rerank")


@dataclass(frozen=True)
class Retrieval:
    """What an embedding or rerank entry serves (issue 25)."""

    max_input_tokens: int  # the encoder's input limit (its positions / the card's figure)
    dimensions: int | None = None  # embedding width (embedding models only)
    matryoshka: bool = False  # trained so that leading dimensions stand alone (`dimensions`)


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    name: str
    family: str
    publisher: str
    architecture: str  # dense | moe
    attention: str
    params_b: float
    active_params_b: float
    context_length: int
    gated: bool
    license: str
    tags: tuple[str, ...]
    capabilities: Capabilities
    repos: dict[str, RepoRef]  # by quant: int4 / int6 / int8 / bf16
    kv_cache: KvCache | None = None
    measured: tuple[Measurement, ...] = ()
    notes: str | None = None
    source: str = ""  # the file it came from
    released: str | None = None  # "YYYY-MM"
    quality: QualityScore | None = None
    shape: Shape | None = None
    repo_source: str | None = None  # where the repos' existence was checked
    kind: str = "chat"  # chat | embedding | rerank
    retrieval: Retrieval | None = None  # embedding / rerank entries only

    @property
    def is_moe(self) -> bool:
        return self.architecture == "moe"

    def repo(self, quant: str) -> RepoRef | None:
        return self.repos.get(quant)

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id, "name": self.name, "family": self.family, "publisher": self.publisher,
            "architecture": self.architecture, "attention": self.attention,
            "params_b": self.params_b, "active_params_b": self.active_params_b,
            "context_length": self.context_length, "gated": self.gated, "license": self.license,
            "tags": list(self.tags),
            "capabilities": vars(self.capabilities).copy(),
            "repos": {q: {"repo": r.repo, "disk_gb": r.disk_gb} for q, r in self.repos.items()},
            "released": self.released,
            "quality": None if self.quality is None else vars(self.quality).copy(),
            "shape": None if self.shape is None else vars(self.shape).copy(),
            "repo_source": self.repo_source,
            **({"kind": self.kind, "retrieval": vars(self.retrieval).copy() if self.retrieval else None}
               if self.kind != "chat" else {}),
        }


_HINT = "see the catalog schema in DEVELOPING.md"


def _fields(data: object, source: str) -> Fields:
    """Typed access to one catalog mapping, with errors that name file and field."""
    return Fields(data, error=in_file(source, CatalogError, _HINT), bool_as="a boolean")


_TOP = ("id", "name", "family", "publisher", "architecture", "attention", "params_b", "active_params_b",
        "context_length", "gated", "license", "tags", "capabilities", "kv_cache", "disk_size_source",
        "repos", "measured", "notes", "quality", "released", "shape", "repo_source", "kind", "retrieval")
_RELEASED = re.compile(r"^20\d\d-(0[1-9]|1[0-2])$")
_URL = re.compile(r"^https://\S+$")


def parse_entry(data: object, source: str) -> CatalogEntry:
    """Validate one catalog mapping; ``source`` (the file name) prefixes every error."""
    f = _fields(data, source)
    f.unknown(_TOP)
    entry_id = f.get("id", str)
    if not _ID.match(entry_id):
        f.fail("id", "expected lower-case letters, digits, '.' and '-'")
    params = f.number("params_b", 0.01, 5000)
    active = f.number("active_params_b", 0.01, 5000)
    assert params is not None and active is not None
    architecture = f.choice("architecture", ARCHITECTURES)
    if active > params:
        f.fail("active_params_b", f"larger than params_b ({active:g} > {params:g})")
    if architecture == "dense" and active != params:
        f.fail("active_params_b", "a dense model has active_params_b == params_b")
    tags = cast("list[str]", f.get("tags", list))  # each checked against TAGS below
    for i, tag in enumerate(tags):
        if tag not in TAGS:
            f.fail(f"tags[{i}]", f"unknown tag {tag!r}; known: {', '.join(TAGS)}")
    caps_f = f.sub("capabilities")
    caps_f.unknown(("tool_calling", "tool_call_parser", "reasoning_parser", "vision"))
    caps = Capabilities(
        tool_calling=caps_f.get("tool_calling", bool),
        tool_call_parser=caps_f.optional("tool_call_parser", str),
        reasoning_parser=caps_f.optional("reasoning_parser", str),
        vision=caps_f.get("vision", bool),
    )
    if caps.tool_calling != (caps.tool_call_parser is not None):
        caps_f.fail("tool_call_parser", "required exactly when tool_calling is true")
    repos_f = f.sub("repos")
    repos: dict[str, RepoRef] = {}
    for quant in repos_f.data:
        if quant not in QUANT_BITS:
            repos_f.fail(str(quant), f"unknown quantization; known: {', '.join(QUANT_BITS)}")
        r = repos_f.sub(quant)
        r.unknown(("repo", "disk_gb"))
        repo = r.get("repo", str)
        if not _REPO.match(repo):
            r.fail("repo", "expected a Hugging Face repo id like org/name")
        repos[quant] = RepoRef(quant, repo, r.number("disk_gb", 0.01, 10000) or 0.0)
    if not repos:
        repos_f.fail("", "at least one quantization is required")
    kv = None
    kv_f = f.optional_sub("kv_cache")
    if kv_f is not None:
        kv_f.unknown(("layers", "kv_heads", "head_dim", "full_attention_layers", "sliding_window"))
        kv = KvCache(
            layers=kv_f.integer("layers", 1, 1000) or 0,
            kv_heads=kv_f.integer("kv_heads", 1, 1000) or 0,
            head_dim=kv_f.integer("head_dim", 1, 4096) or 0,
            full_attention_layers=kv_f.integer("full_attention_layers", 0, 1000, required=False),
            sliding_window=kv_f.integer("sliding_window", 1, 10_000_000, required=False),
        )
    measured: list[Measurement] = []
    for i, raw in enumerate(cast("list[object]", f.optional("measured", list, []))):
        m = f.nested(f"measured[{i}]", raw)
        m.unknown(("quant", "chip", "gpu_cores", "memory_gb", "machine", "decode_tok_s",
                   "prefill_tok_s", "peak_memory_gib", "source"))
        quant = m.get("quant", str)
        if quant not in repos:
            m.fail("quant", f"no repo for {quant!r} in repos")
        measured.append(Measurement(
            quant=quant, chip=m.get("chip", str), gpu_cores=m.integer("gpu_cores", 1, 512, required=False),
            memory_gb=m.integer("memory_gb", 1, 4096) or 0, machine=m.get("machine", str),
            decode_tok_s=m.number("decode_tok_s", 0.01, 100000) or 0.0,
            prefill_tok_s=m.number("prefill_tok_s", 0.01, 1e7, required=False),
            peak_memory_gib=m.number("peak_memory_gib", 0.01, 10000, required=False),
            source=m.get("source", str),
        ))
    released = f.optional("released", str)
    if released is not None and not _RELEASED.match(released):
        f.fail("released", f"expected YYYY-MM, found {released!r}")
    kind = f.choice("kind", KINDS) if "kind" in f.data else "chat"
    retrieval = _retrieval(f, kind)
    return CatalogEntry(
        id=entry_id, name=f.get("name", str), family=f.get("family", str),
        publisher=f.get("publisher", str), architecture=architecture,
        attention=f.choice("attention", ATTENTION), params_b=params, active_params_b=active,
        context_length=f.integer("context_length", 512, 100_000_000) or 0,
        gated=f.get("gated", bool), license=f.get("license", str), tags=tuple(tags),
        capabilities=caps, repos=repos, kv_cache=kv, measured=tuple(measured),
        notes=f.optional("notes", str), source=source,
        released=released, quality=_quality(f), shape=_shape(f, architecture),
        repo_source=f.optional("repo_source", str), kind=kind, retrieval=retrieval,
    )


def _retrieval(f: Fields, kind: str) -> Retrieval | None:
    r = f.optional_sub("retrieval")
    if (r is None) != (kind == "chat"):
        f.fail("retrieval", "required exactly on an embedding or rerank entry")
    if r is None:
        return None
    r.unknown(("max_input_tokens", "dimensions", "matryoshka"))
    dims = r.integer("dimensions", 1, 65536, required=kind == "embedding")
    if kind == "rerank" and dims is not None:
        r.fail("dimensions", "a reranker has no embedding width")
    return Retrieval(max_input_tokens=r.integer("max_input_tokens", 16, 10_000_000) or 0, dimensions=dims,
                     matryoshka=r.optional("matryoshka", bool, False))


def _quality(f: Fields) -> QualityScore | None:
    q = f.optional_sub("quality")
    if q is None:
        return None
    q.unknown(("score", "benchmark", "source", "date"))
    source = q.get("source", str)
    if not _URL.match(source):
        q.fail("source", "expected an https:// URL of the leaderboard or model card")
    return QualityScore(score=q.number("score", 0, 100) or 0.0, benchmark=q.get("benchmark", str),
                        source=source, date=q.get("date", str))


def _shape(f: Fields, architecture: str) -> Shape | None:
    sh = f.optional_sub("shape")
    if sh is None:
        return None
    sh.unknown(("source", "layers", "kv_heads", "experts", "experts_active", "full_attention_layers"))
    shape = Shape(
        source=sh.get("source", str), layers=sh.integer("layers", 1, 1000, required=False),
        kv_heads=sh.integer("kv_heads", 1, 1000, required=False),
        experts=sh.integer("experts", 1, 10000, required=False),
        experts_active=sh.integer("experts_active", 1, 10000, required=False),
        full_attention_layers=sh.integer("full_attention_layers", 0, 1000, required=False),
    )
    if shape.experts is not None and architecture != "moe":
        sh.fail("experts", "only a mixture-of-experts model has experts")
    if shape.experts and shape.experts_active and shape.experts_active > shape.experts:
        sh.fail("experts_active", "more active experts than experts")
    return shape


class Catalog:
    """Entries in id order, with lookups and the filters of `models --catalog`."""

    def __init__(self, entries: Iterable[CatalogEntry]):
        self.entries = sorted(entries, key=lambda e: e.id)
        self._by_id = {e.id: e for e in self.entries}

    def __iter__(self) -> Iterator[CatalogEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, model_id: str) -> CatalogEntry:
        try:
            return self._by_id[model_id]
        except KeyError:
            raise NotFoundError(f"unknown model {model_id!r}",
                                hint="`mlx-stack models --catalog` lists the catalog") from None

    def find_repo(self, repo: str) -> tuple[CatalogEntry, str] | None:
        """The entry and quant that ship ``repo`` (case-insensitive), if any."""
        for e in self.entries:
            for q, r in e.repos.items():
                if r.repo.lower() == repo.lower():
                    return e, q
        return None

    def families(self) -> list[str]:
        return sorted({e.family for e in self.entries})

    def tags(self) -> list[str]:
        return sorted({t for e in self.entries for t in e.tags})

    def filter(self, *, family: str | None = None, tag: str | None = None,
               tool_calling: bool = False) -> list[CatalogEntry]:
        """Entries matching every given filter; an unknown family or tag is an error."""
        if family is not None and family.lower() not in self.families():
            raise NotFoundError(f"unknown family {family!r}", hint="families: " + ", ".join(self.families()))
        if tag is not None and tag.lower() not in self.tags():
            raise NotFoundError(f"unknown tag {tag!r}", hint="tags: " + ", ".join(self.tags()))
        return [
            e for e in self.entries
            if (family is None or e.family == family.lower())
            and (tag is None or tag.lower() in e.tags)
            and (not tool_calling or e.capabilities.tool_calling)
        ]


def parse_file(text: str, source: str) -> CatalogEntry:
    """Validate one catalog file's text; ``source`` is its name, which must be ``<id>.yaml``."""
    data = parse_yaml(text, source, hint="fix the file", error=CatalogError)
    entry = parse_entry(data, source)
    if PurePath(source).stem != entry.id:
        raise CatalogError(f"{source}: id: {entry.id!r} differs from the file name",
                           hint="name each file <id>.yaml")
    return entry


def parse_catalog(files: Iterable[tuple[str, str]]) -> Catalog:
    """Validate every ``(name, text)`` catalog file, in name order; no repo may be listed twice."""
    entries = [parse_file(text, name) for name, text in sorted(files, key=lambda f: f[0])]
    seen: dict[str, str] = {}
    for e in entries:
        for r in e.repos.values():
            if r.repo in seen:
                raise CatalogError(f"{e.source}: repos: {r.repo} is also listed in {seen[r.repo]}")
            seen[r.repo] = e.source
    return Catalog(entries)
