"""setup's flow against a recording UI: what it asks, when it stops, what it never picks."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from mlx_stack.core import catalog as catalog_mod
from mlx_stack.core.stack_change import SetupFlags
from mlx_stack.errors import NotFoundError
from mlx_stack.paths import Paths
from mlx_stack.services import catalog_store, setup
from mlx_stack.system import hub


@dataclass
class RecordingUI:
    interactive: bool = True
    intent: str = "agent-fleet"
    budget: int = 30
    answer: bool = False
    asked: list[str] = field(default_factory=list)
    said: list[str] = field(default_factory=list)
    recs: list[Any] = field(default_factory=list)

    def say(self, message: str) -> None:
        self.said.append(message)

    def hardware(self, profile: Any) -> None:
        self.asked.append("(hardware shown)")

    def recommendation(self, rec: Any, profiles: Any) -> None:
        self.recs.append(rec)

    def ask_intent(self, default: str) -> str:
        self.asked.append(f"intent [{default}]")
        return self.intent

    def ask_budget_pct(self, default: int) -> int:
        self.asked.append(f"budget [{default}]")
        return self.budget

    def confirm(self, question: str) -> bool:
        self.asked.append(question)
        return self.answer

    def pull_started(self, plan: Any) -> None: ...
    def pull_progress(self, done: int, total: int) -> None: ...
    def pull_finished(self) -> None: ...


def _fake_hub(monkeypatch: pytest.MonkeyPatch, size: int = 3_000_000) -> None:
    def fetch_repo(repo_id: str, **_: object) -> hub.RemoteRepo:
        files = (hub.RemoteFile("config.json", 100, "c"), hub.RemoteFile("model.safetensors", size, repo_id))
        return hub.RemoteRepo(repo_id, "f" * 40, False, files)

    monkeypatch.setattr(hub, "fetch_repo", fetch_repo)
    monkeypatch.setattr(hub, "token", lambda: None)
    monkeypatch.setattr(hub, "download", lambda *a, **k: pytest.fail("no download before the confirmation"))


def test_interactive_shows_hardware_asks_then_confirms_before_any_download(
        monkeypatch: pytest.MonkeyPatch, isolated_home: Paths) -> None:
    _fake_hub(monkeypatch)
    ui = RecordingUI()
    with pytest.raises(setup.SetupCancelled) as err:
        setup.run(isolated_home, SetupFlags(no_start=True), ui)
    assert err.value.exit_code == 0
    # the agent intent is proposed: this machine affords a 64K window on standard
    assert ui.asked[:3] == ["(hardware shown)", "intent [agent]", "budget [40]"]
    assert ui.asked[-1].startswith("Download ") and ui.asked[-1].endswith(" and continue?")
    assert any(s.startswith("to download: ") and "free on disk" in s for s in ui.said)
    rec = ui.recs[0]
    assert rec.intent == "agent-fleet" and "30%" in rec.budget_reason
    assert not isolated_home.stack_file.exists()


def test_flags_and_accept_defaults_skip_the_questions(monkeypatch: pytest.MonkeyPatch,
                                                      isolated_home: Paths) -> None:
    _fake_hub(monkeypatch)
    monkeypatch.setattr(setup.pulling, "execute", lambda *a, **k: pytest.fail("stop here"))
    ui = RecordingUI()
    with pytest.raises(pytest.fail.Exception):
        setup.run(isolated_home, SetupFlags(accept_defaults=True, intent="balanced", no_start=True), ui)
    assert ui.asked == ["(hardware shown)"]  # no question, no confirmation


def test_accept_defaults_never_picks_a_gated_model(monkeypatch: pytest.MonkeyPatch,
                                                   isolated_home: Paths) -> None:
    shipped = catalog_store.load_catalog()
    keep = min((e for e in shipped if e.kind == "chat"), key=lambda e: e.params_b)  # the only ungated one
    gated = catalog_mod.Catalog([e if e.id == keep.id else replace(e, gated=True) for e in shipped])
    monkeypatch.setattr(catalog_store, "load_catalog", lambda: gated)
    monkeypatch.setattr(hub, "token", lambda: "hf_a_token")
    for flags, ui in ((SetupFlags(accept_defaults=True, no_pull=True), RecordingUI()),
                      (SetupFlags(no_pull=True), RecordingUI(interactive=False))):
        with pytest.raises(NotFoundError):  # --no-pull: the model is not on disk
            setup.run(isolated_home, flags, ui)
        assert {t.entry.id for t in ui.recs[0].tiers} == {keep.id}
    # Asked interactively, with a token, gated models are fair game.
    ui = RecordingUI(intent="balanced", budget=40)
    with pytest.raises(NotFoundError):
        setup.run(isolated_home, SetupFlags(no_pull=True), ui)
    assert any(t.entry.gated for t in ui.recs[0].tiers)


def test_the_intent_answered_at_the_prompt_is_the_one_the_stack_gets(isolated_home: Paths) -> None:
    # The routing rules (tool calls -> fast for an agent fleet) follow the answer, not only --intent.
    wanted, intent = setup._recommended(isolated_home, SetupFlags(), RecordingUI(intent="agent-fleet"),
                                        "int4", 40)
    assert intent == "agent-fleet" and wanted
    _, intent = setup._recommended(isolated_home, SetupFlags(intent="balanced"), RecordingUI(), "int4", 40)
    assert intent == "balanced"
