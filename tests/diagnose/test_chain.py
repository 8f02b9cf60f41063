"""The chain: playbooks first; an LLM never makes the answer worse."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from healer.diagnose.base import DiagnoseContext, Diagnoser
from healer.diagnose.chain import ChainDiagnoser
from healer.diagnose.client import RetryPolicy
from healer.diagnose.factory import build_diagnoser
from healer.diagnose.playbook import PlaybookDiagnoser
from healer.settings import Settings
from healer.telemetry import Telemetry
from playbooks.loader import load_file
from tests.diagnose.conftest import FIXTURES, make_incident
from tests.diagnose.test_llm_http import RAISE
from tests.llm_server import LLMServer, Reply

PLAYBOOK, _ = load_file(FIXTURES / "playbooks" / "cgroup-memory-limit-too-low.yaml")
FACTS = {"cgroup.memory_max": 104857600}


def _ctx(**update: Any) -> DiagnoseContext:
    pb = PLAYBOOK.model_copy(update=update) if update else PLAYBOOK
    return DiagnoseContext(playbook=pb, facts=FACTS)


def _chain(settings: Settings, retry: RetryPolicy) -> ChainDiagnoser:
    return build_diagnoser(settings, Telemetry(), retry=retry)


def test_diagnosers_satisfy_the_protocol(settings: Settings, no_sleep: RetryPolicy) -> None:
    assert isinstance(PlaybookDiagnoser(), Diagnoser)
    assert isinstance(_chain(settings, no_sleep), Diagnoser)


def test_playbook_diagnoser_renders_remedies_with_playbook_provenance() -> None:
    d = PlaybookDiagnoser().diagnose(make_incident(), _ctx())
    assert (d.root_cause, d.source, d.confidence) == ("cgroup-memory-limit-too-low", "playbook",
                                                      0.8)
    [p] = d.proposals
    assert p.provenance == "playbook" and p.in_playbook
    assert p.action.model_dump()["value"] == "157286400"


def test_without_llm_settings_the_chain_is_playbook_only(tmp_path: Any) -> None:
    chain = build_diagnoser(Settings(state_dir=tmp_path), Telemetry())
    assert chain.llm is None and chain.status() == {"llm": "off"}
    assert chain.diagnose(make_incident(), _ctx()).source == "playbook"


def test_confident_playbook_is_not_sent_to_the_llm(
        llm_server: LLMServer, settings: Settings, no_sleep: RetryPolicy) -> None:
    d = _chain(settings, no_sleep).diagnose(make_incident(), _ctx())
    assert d.source == "playbook" and llm_server.requests == []


def test_llm_failure_leaves_the_playbook_answer_standing(
        llm_server: LLMServer, settings: Settings, no_sleep: RetryPolicy) -> None:
    llm_server.reset(mode="error")
    chain = _chain(settings, no_sleep)
    ctx = _ctx(confidence=0.3)
    d = chain.diagnose(make_incident(), ctx)
    base = PlaybookDiagnoser().diagnose(make_incident(), ctx)
    assert d.model_copy(update={"second_opinion": None}) == base
    assert d.second_opinion is not None and d.second_opinion.failure == "server"
    assert d.second_opinion.proposals == ()
    assert len(llm_server.requests) == 3


def test_llm_unknown_leaves_the_playbook_answer_standing(
        llm_server: LLMServer, settings: Settings, no_sleep: RetryPolicy) -> None:
    llm_server.reset(mode="unknown")
    d = _chain(settings, no_sleep).diagnose(make_incident(), _ctx(second_opinion=True))
    assert d.source == "playbook" and d.root_cause == "cgroup-memory-limit-too-low"
    assert d.second_opinion is not None and d.second_opinion.root_cause == "unknown"


def test_second_opinion_never_overrides_a_confident_playbook(
        llm_server: LLMServer, settings: Settings, no_sleep: RetryPolicy) -> None:
    notify = {"action": {"kind": "notify", "message": "look at HOST_1"}}
    llm_server.push(Reply.answer("memory-leak", [RAISE, notify], confidence=0.99))
    d = _chain(settings, no_sleep).diagnose(make_incident(), _ctx(second_opinion=True))
    assert d.root_cause == "cgroup-memory-limit-too-low" and d.source == "playbook"
    assert all(p.provenance == "playbook" for p in d.proposals)
    opinion = d.second_opinion
    assert opinion is not None and opinion.root_cause == "memory-leak" and not opinion.agrees
    assert {p.action.kind for p in opinion.proposals} == {"cgroup_limit", "notify"}
    assert all(p.provenance == "llm" and not p.in_playbook for p in opinion.proposals)


def test_a_sure_but_disagreeing_llm_never_replaces_an_unsure_playbook(
        llm_server: LLMServer, settings: Settings, no_sleep: RetryPolicy) -> None:
    same = dict(RAISE, action={**RAISE["action"], "value": "157286400"})  # the playbook's own
    llm_server.push(Reply.answer("memory-leak", [same], confidence=1.0))
    d = _chain(settings, no_sleep).diagnose(make_incident(), _ctx(confidence=0.3))
    assert (d.root_cause, d.source, d.confidence) == ("cgroup-memory-limit-too-low",
                                                      "playbook", 0.3)
    assert d.second_opinion is not None and d.second_opinion.root_cause == "memory-leak"
    # Even the playbook's own remedy, proposed by a disagreeing LLM, waits for a person.
    [p] = d.second_opinion.proposals
    assert (p.provenance, p.in_playbook) == ("llm", False)


def test_an_agreeing_llm_may_pick_the_playbooks_remedies_and_nothing_else(
        llm_server: LLMServer, settings: Settings, no_sleep: RetryPolicy) -> None:
    notify = {"action": {"kind": "notify", "message": "raise it"}}
    same = dict(RAISE, action={**RAISE["action"], "value": "157286400"})
    llm_server.push(Reply.answer("cgroup-memory-limit-too-low", [same, notify]))
    d = _chain(settings, no_sleep).diagnose(make_incident(), _ctx(confidence=0.3))
    assert d.second_opinion is not None and d.second_opinion.agrees
    tags = {p.action.kind: (p.provenance, p.in_playbook) for p in d.second_opinion.proposals}
    assert tags == {"cgroup_limit": ("llm", True), "notify": ("llm", False)}


def test_without_a_playbook_the_llm_names_its_own_root_cause(
        llm_server: LLMServer, settings: Settings, no_sleep: RetryPolicy) -> None:
    llm_server.push(Reply.answer("mlx5-firmware-command-failure", [RAISE], confidence=0.7,
                                 explanation="the NIC firmware rejected CREATE_MKEY"))
    incident = make_incident(playbook="unclassified", scope="host")
    d = _chain(settings, no_sleep).diagnose(incident, DiagnoseContext())
    assert (d.root_cause, d.source) == ("mlx5-firmware-command-failure", "llm")
    assert d.second_opinion is None and len(llm_server.requests) == 1
    assert [(p.provenance, p.in_playbook) for p in d.proposals] == [("llm", False)]


def test_playbook_path_never_imports_langchain() -> None:
    code = (
        "import sys\n"
        "from healer.diagnose.factory import build_diagnoser\n"
        "from healer.diagnose.base import DiagnoseContext\n"
        "from healer.settings import Settings\n"
        "from healer.telemetry import Telemetry\n"
        "from tests.diagnose.conftest import make_incident\n"
        "chain = build_diagnoser(Settings(), Telemetry())\n"
        "chain.diagnose(make_incident(), DiagnoseContext())\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('langchain', 'langchain_core',"
        " 'langchain_openai', 'openai')]\n"
        "print(bad)\n"
        "assert not bad\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=str(FIXTURES.parent.parent.parent), timeout=60)
    assert out.returncode == 0, out.stderr + out.stdout
