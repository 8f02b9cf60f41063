"""The labelled kernel-log corpus (tests/fixtures/kernel-corpus) keeps its schema and its promises.

This checks the data only: field types, labels, provenance URLs, report structure and the minimum
counts the corpus was built to meet. Whether the detector classifies these lines correctly is
tested elsewhere.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urlparse

import pytest
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from playbooks.xid import XID_TABLE

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "kernel-corpus"

ClassName = Literal[
    "oom-global", "oom-memcg", "syn-flood", "conntrack-full", "soft-lockup", "hung-task",
    "pids-fork-rejected", "file-max", "gpu-xid", "gpu-fallen-off-bus", "nvswitch-sxid",
    "block-io-error", "fs-error", "nvme-error", "hw-corrected", "hw-uncorrected", "nic-link-down",
    "nic-tx-timeout", "kernel-oops", "rcu-stall", "hard-lockup", "page-alloc-failure", "segfault",
    "benign",
]
Role = Literal["header", "continuation", "summary", "kill", "reaper", "trailer", "single"]

PLAYBOOK: dict[str, str | None] = {
    "oom-global": "memory-pressure-oom",
    "oom-memcg": "cgroup-memory-limit-too-low",
    "syn-flood": "syn-backlog-overflow",
    "conntrack-full": "conntrack-table-full",
    "soft-lockup": "soft-lockup",
    "hung-task": "hung-task",
    "pids-fork-rejected": "pids-limit-too-low",
    "file-max": "file-table-exhausted",
    "gpu-fallen-off-bus": "gpu-xid-fell-off-bus",
    "nvswitch-sxid": "gpu-nvswitch-sxid",
    "block-io-error": "block-io-error",
    "fs-error": "filesystem-error",
    "nvme-error": "nvme-controller-error",
    "hw-corrected": "hw-corrected-errors",
    "hw-uncorrected": "hw-uncorrected-error",
    "nic-link-down": "nic-link-down",
    "nic-tx-timeout": "nic-tx-timeout",
    "kernel-oops": "kernel-oops",
    "rcu-stall": "rcu-stall",
    "hard-lockup": "hard-lockup",
    "page-alloc-failure": "page-allocation-failure",
    "segfault": "segfault-storm",
    "benign": None,
}
LEVEL_NAMES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
XID_RX = re.compile(r"NVRM: Xid \([^)]*\): (\d+),")
XID_PLAYBOOKS = {info.playbook for info in XID_TABLE.values()} | {"gpu-xid-other"}
SOURCE_HOSTS = ("elixir.bootlin.com", "github.com", "git.kernel.org", "lore.kernel.org")


def well_formed_url(value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or re.search(r"\s", value):
        raise ValueError(f"not a well-formed http(s) URL: {value!r}")
    return value


class Line(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    message: str = Field(min_length=1)
    level: int = Field(ge=0, le=7)
    level_name: Literal["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]
    facility: Literal[0]
    level_source: str
    klass: ClassName = Field(alias="class")
    playbook: str | None
    source_url: str
    kernel: str | None
    distro: str | None
    arch: str | None
    report: str = Field(pattern=r"^r\d{4}$")
    seq: int = Field(ge=1)
    role: Role
    synthesized: bool
    also: list[ClassName] | None = None

    _urls = field_validator("level_source", "source_url")(well_formed_url)

    @model_validator(mode="after")
    def consistent(self) -> Line:
        assert self.level_name == LEVEL_NAMES[self.level], (self.level, self.level_name)
        assert self.message == self.message.strip("\n"), "message keeps no trailing newline"
        if self.klass == "gpu-xid":
            assert self.playbook in XID_PLAYBOOKS, self.playbook
            code = XID_RX.search(self.message)
            if code:
                info = XID_TABLE.get(int(code.group(1)))
                assert self.playbook == (info.playbook if info else "gpu-xid-other"), self.message
        else:
            assert self.playbook == PLAYBOOK[self.klass], (self.klass, self.playbook)
        if self.also is not None:
            assert self.also and self.klass not in self.also
        if self.synthesized:
            # a synthesized line cites the kernel (or driver) source of its format
            assert urlparse(self.source_url).netloc in SOURCE_HOSTS, self.source_url
        return self


class Format(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    klass: ClassName = Field(alias="class")
    format: str = Field(min_length=1)
    file: str = Field(min_length=1)
    function: str | None
    level: int = Field(ge=0, le=7)
    first_kernel: str | None
    last_kernel: str | None
    source_url: str
    seen_in: list[str]
    note: str | None = None

    _url = field_validator("source_url")(well_formed_url)


class CatalogEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["xid", "sxid"]
    code: int = Field(ge=1)
    name: str = Field(min_length=1)
    meaning: str | None
    recovery: str | None
    severity: str = Field(min_length=1)
    source_url: str
    via: str
    immediate_action: str | None = None
    investigatory_action: str | None = None
    potential_fatal: bool | None = None
    always_fatal: bool | None = None
    section: str | None = None
    document: str | None = None

    _urls = field_validator("source_url", "via")(well_formed_url)


def read_jsonl(name: str) -> list[dict[str, object]]:
    path = CORPUS / name
    rows = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        assert text.strip(), f"{name}:{number} is blank"
        rows.append(json.loads(text))
    return rows


@pytest.fixture(scope="module")
def lines() -> list[Line]:
    return [Line.model_validate(row) for row in read_jsonl("lines.jsonl")]


@pytest.fixture(scope="module")
def reports(lines: list[Line]) -> dict[str, list[Line]]:
    grouped: dict[str, list[Line]] = defaultdict(list)
    for line in lines:
        grouped[line.report].append(line)
    return grouped


def test_every_line_matches_the_schema(lines: list[Line]) -> None:
    assert len(lines) > 0


def test_minimum_counts(lines: list[Line]) -> None:
    failures = [ln for ln in lines if ln.klass != "benign" and ln.role != "continuation"]
    benign = [ln for ln in lines if ln.klass == "benign"]
    assert len(failures) >= 300
    assert len(benign) >= 60


def test_every_class_is_present(lines: list[Line]) -> None:
    present = {ln.klass for ln in lines if ln.role != "continuation"}
    assert present == set(get_args(ClassName))


def test_synthesized_share_at_most_a_quarter(lines: list[Line]) -> None:
    assert sum(ln.synthesized for ln in lines) <= 0.25 * len(lines)


def test_message_and_report_pairs_are_unique(lines: list[Line]) -> None:
    pairs = Counter((ln.message, ln.report) for ln in lines)
    assert [pair for pair, n in pairs.items() if n > 1] == []


def test_reports_are_consecutive_with_increasing_seq(lines: list[Line]) -> None:
    seen: set[str] = set()
    previous: Line | None = None
    for line in lines:
        if previous is None or line.report != previous.report:
            assert line.report not in seen, f"report {line.report} is split"
            seen.add(line.report)
        else:
            assert line.seq > previous.seq, (line.report, previous.seq, line.seq)
        previous = line


def test_a_report_has_one_provenance(reports: dict[str, list[Line]]) -> None:
    for rid, rows in reports.items():
        origins = {(r.source_url, r.kernel, r.distro, r.arch, r.synthesized) for r in rows}
        assert len(origins) == 1, rid


def whole(rows: list[Line]) -> bool:
    roles = Counter(r.role for r in rows)
    return roles["header"] >= 1 and roles["continuation"] >= 2


def test_at_least_fifteen_whole_multi_line_reports(reports: dict[str, list[Line]]) -> None:
    multi = [rid for rid, rows in reports.items() if whole(rows)]
    assert len(multi) >= 15
    for cls in ("kernel-oops", "rcu-stall", "soft-lockup", "hung-task"):
        assert any(whole(rows) and rows[0].klass == cls for rows in reports.values()), cls


@pytest.mark.parametrize("cls", ["oom-global", "oom-memcg"])
def test_complete_oom_reports(reports: dict[str, list[Line]], cls: str) -> None:
    need = {"header", "continuation", "summary", "kill", "reaper"}
    complete = [rows for rows in reports.values()
                if {r.role for r in rows if r.klass == cls} >= need]
    assert complete, f"no {cls} report with {sorted(need)}"


def test_oom_kill_lines_of_several_eras(lines: list[Line]) -> None:
    oom = ("oom-global", "oom-memcg")
    kills = [ln.message for ln in lines if ln.klass in oom and ln.role == "kill"]
    assert any(m.startswith("Out of Memory: Killed process") for m in kills)
    assert any("or sacrifice child" in m for m in kills)
    assert any(re.search(r"Killed process \d+ \(.*\) total-vm:", m) for m in kills)


def test_gpu_continuations_take_the_report_xid_playbook(reports: dict[str, list[Line]]) -> None:
    for rows in reports.values():
        gpu = [r for r in rows if r.klass == "gpu-xid"]
        coded = {r.playbook for r in gpu if XID_RX.search(r.message)}
        for row in gpu:
            if not XID_RX.search(row.message):
                assert row.role == "continuation" and row.playbook in coded, row.message


def test_formats_match_the_schema_and_cover_every_class() -> None:
    formats = [Format.model_validate(row) for row in read_jsonl("formats.jsonl")]
    covered = {f.klass for f in formats}
    assert covered >= set(get_args(ClassName)) - {"benign"}
    keys = {(f.klass, f.format, f.file, f.level, f.source_url) for f in formats}
    assert len(keys) == len(formats)


def test_xid_catalog_matches_the_schema() -> None:
    entries = [CatalogEntry.model_validate(row) for row in read_jsonl("xid-catalog.jsonl")]
    keys = Counter((e.kind, e.code) for e in entries)
    assert [k for k, n in keys.items() if n > 1] == []
    codes = {e.code for e in entries if e.kind == "xid"}
    assert {13, 31, 48, 79, 94, 95, 119} <= codes
    assert {e.kind for e in entries} == {"xid", "sxid"}


def test_readme_documents_the_corpus() -> None:
    text = (CORPUS / "README.md").read_text(encoding="utf-8")
    for word in ("synthesized", "level_source", "source_url", "continuation"):
        assert word in text
