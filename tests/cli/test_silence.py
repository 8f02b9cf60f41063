"""``healer silence add|list|remove``: one clear line and exit 2 on a refused silence."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from healer.cli.main import main
from healer.detect.templates import template
from healer.models import Evidence, Incident
from healer.store.repository import Repository

LINE = "mydrv 0000:3b:00.0: firmware heartbeat missed 3 times"


def _json(capsys: pytest.CaptureFixture[str]) -> object:
    return json.loads(capsys.readouterr().out)


def test_add_list_remove_by_template_is_audited(repo: Repository,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    tpl = template(LINE)
    assert main(["silence", "add", "--template", tpl, "--comment", "vendor says harmless",
                 "--duration", "2h", "--json"]) == 0
    made = _json(capsys)
    assert isinstance(made, dict) and made["template"] == tpl and made["active"] is True
    assert main(["silence", "list", "--json"]) == 0
    assert [s["id"] for s in _json(capsys)] == [made["id"]]  # type: ignore[union-attr]
    assert repo.active_silences(datetime.now(UTC)) != {}
    assert main(["silence", "remove", str(made["id"])]) == 0
    assert "removed" in capsys.readouterr().out
    assert main(["silence", "remove", str(made["id"])]) == 1
    events = [a.event for a in repo.list_audit(subject=f"silence:{made['id']}")]
    assert events == ["silence.removed", "silence.added"]


def test_add_by_incident_takes_its_template(repo: Repository,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime.now(UTC)
    incident = repo.open_incident(Incident(
        host_id="cli-host", playbook="unclassified", scope="host", subject=template(LINE),
        first_seen=now, last_seen=now, evidence=Evidence(kmsg=(LINE,))))
    until = (now + timedelta(days=30)).replace(microsecond=0, tzinfo=None)
    assert main(["silence", "add", "--incident", str(incident.id), "--comment", "ok",
                 "--until", until.isoformat(), "--json"]) == 0
    made = _json(capsys)
    assert isinstance(made, dict) and made["template"] == template(LINE)
    assert made["expires_at"].startswith(until.isoformat())


@pytest.mark.parametrize(("args", "problem"), [
    (["--template", "Out of memory: Killed process <N> (<S>)"], "claims this message"),
    (["--template", "x <N>", "--duration", "30s"], "between 1 minute"),
    (["--template", "x <N>", "--duration", "forever"], "duration"),
    (["--incident", "999"], "no incident 999"),
    (["--fingerprint", "soft-lockup|host"], "fingerprint"),
])
def test_a_refused_silence_is_one_line_and_exit_2(repo: Repository, args: list[str],
                                                 problem: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        rc = main(["silence", "add", *args, "--comment", "c"])
        raise SystemExit(rc)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and problem in err and "\n" not in err
    assert repo.list_silences() == []
