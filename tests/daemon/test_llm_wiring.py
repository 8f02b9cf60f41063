"""The composition roots wire the LLM job: ``healer serve`` (``build_serve``) with an LLM
configured asks it about the agent's unclassified incidents, within
``llm_diagnoses_per_hour``, and the root agent (``build_daemon``) takes its answers up."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from healer.cli.serve import build_serve
from healer.daemon import build_daemon
from healer.settings import Settings
from tests.llm_server import LLMServer

LINES = ("frobnic 0000:5e:00.0: DMA engine 3 halted: descriptor ring corrupt (head 0x1a40)",
         "qzx_hba host4: link to target 7 lost, aborting 12 outstanding commands")


def test_the_daemon_asks_the_llm_about_unclassified_incidents_within_the_hourly_budget(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    kmsg = tmp_path / "kmsg.txt"
    kmsg.write_text("".join(f"3,{n},{n * 1000},-;{line}\n" for n, line in enumerate(LINES, 1)))
    with LLMServer(mode="correct") as srv:
        settings = Settings(state_dir=tmp_path / "state", kmsg_source=str(kmsg),
                            gpu_backend="none", mode="observe", host_id="wired",
                            llm_base_url=srv.url, llm_model="scripted",
                            llm_diagnoses_per_hour=1)
        daemon = build_daemon(settings)  # the agent: no LLM client of its own
        assert daemon.telemetry.serve_registry.get_sample_value("healer_llm_calls_total") == 0
        serve = build_serve(settings)
        llm_job, _ = serve.jobs["llm"]
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                daemon.pipeline.cycle()
                llm_job()  # healer serve runs it every few seconds
                if daemon.repo.taken_llm_answer(1) or daemon.repo.taken_llm_answer(2):
                    break
                time.sleep(0.2)
            for _ in range(3):  # the hourly budget is spent: nothing more is asked
                daemon.pipeline.cycle()
                llm_job()
                time.sleep(0.1)
        finally:
            daemon.pipeline.close()
        incidents = daemon.repo.list_incidents()
        assert sorted(i.playbook for i in incidents) == ["unclassified", "unclassified"]
        assert len(srv.requests) == 1  # one diagnosis an hour: the other incident waits
        answered = [i for i in incidents if i.diagnosis and i.diagnosis.second_opinion]
        assert caplog.text.count("llm budget spent") == 1  # said once, not on every run
        assert len(answered) == 1  # the scripted "correct" model says unknown beside it
        deferred = serve.telemetry.serve_registry.get_sample_value(
            "healer_llm_deferred_total", {"reason": "budget"})
        assert deferred is not None and deferred >= 1.0  # each run while the budget is spent
