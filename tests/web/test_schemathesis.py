"""schemathesis against ``/openapi.json``, in-process: no input makes the API answer 5xx.

Each operation gets at least 50 schema-valid and 50 schema-violating requests, with a
fixed seed, once as an admin (whose reads must succeed: the run cannot pass on 401s
alone) and once anonymous (which must get 401s and never a 2xx). The whole test stays within three
minutes.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable

from healer.store.repository import Repository
from tests.web.helpers import Clock, FakeWindow, bearer, make_incident, make_proposal

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is a dev dependency")
from schemathesis import GenerationMode  # noqa: E402

EXAMPLES = 50
SEED = 20261130
BUDGET_SECONDS = 180.0


def _fuzz(app: FastAPI, schema_headers: dict[str, str],
          headers: dict[str, str]) -> dict[str, list[int]]:
    """Status codes per operation with inputs; asserts that none is a server error."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=schema_headers)
    statuses: dict[str, list[int]] = defaultdict(list)
    for result in schema.get_all_operations():
        op = result.ok()
        if not {"parameters", "requestBody"} & set(op.definition.raw):
            statuses["(no inputs) " + op.label] = []  # one request says all: below
            _run(op.as_strategy(), op.label, headers, statuses["(no inputs) " + op.label])
            continue
        _run(op.as_strategy(generation_mode=GenerationMode.POSITIVE), op.label, headers,
             statuses[op.label])
        with suppress(Unsatisfiable):  # an input with no constraint has nothing to violate
            _run(op.as_strategy(generation_mode=GenerationMode.NEGATIVE), op.label, headers,
                 statuses[op.label])
    return statuses


def _run(strategy: Any, label: str, headers: dict[str, str], codes: list[int]) -> None:
    @seed(SEED)
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def call(case: Any) -> None:
        resp = case.call(headers=headers)
        codes.append(resp.status_code)
        assert resp.status_code < 500, (label, case.path_parameters, case.query, case.body,
                                        resp.text[:300])

    call()


@pytest.fixture
def populated(repo: Repository, clock: Clock, window: FakeWindow) -> Repository:
    last = window.latest()
    assert last is not None
    clock.now = datetime.fromtimestamp(last.ts + 0.5, UTC)  # the loop is on time
    incident = make_incident(repo, clock())
    make_proposal(repo, clock(), incident_id=incident.id)
    make_proposal(repo, clock(), approval="quorum:2", value="8192")
    return repo


def test_no_request_makes_the_api_fail_as_admin_or_anonymous(app: FastAPI,
                                                             populated: Repository) -> None:
    started = time.monotonic()
    admin = bearer(populated, "root-admin", "admin")
    as_admin = _fuzz(app, admin, admin)
    anonymous = _fuzz(app, admin, {})
    elapsed = time.monotonic() - started

    assert len(as_admin) >= 10, sorted(as_admin)  # every JSON operation was exercised
    for label, codes in as_admin.items():
        assert codes and (len(codes) >= EXAMPLES or label.startswith("(no inputs)")), label
        if "GET /" in label:
            assert any(200 <= c < 300 for c in codes), (label, sorted(set(codes)))
    for label, codes in anonymous.items():
        if "/healthz" not in label:  # the one anonymous operation
            assert 401 in codes and not any(c < 400 for c in codes), (label, set(codes))
    assert elapsed < BUDGET_SECONDS, f"took {elapsed:.0f} s"


@pytest.mark.parametrize("path", ["/api/v1/actions/9223372036854775808",
                                  "/api/v1/incidents/99999999999999999999999",
                                  "/api/v1/actions?incident_id=9223372036854775808"])
def test_ids_beyond_int64_are_422_not_500(client: Any, repo: Repository, path: str) -> None:
    assert client.get(path, headers=bearer(repo, "vee", "viewer")).status_code == 422


@pytest.mark.parametrize("verb", ["approve", "reject"])
def test_votes_with_huge_ids_or_a_null_body_are_answered_cleanly(
        client: Any, populated: Repository, verb: str) -> None:
    headers = bearer(populated, "ann", "approver") | {"Content-Type": "application/json"}
    huge = client.post(f"/api/v1/proposals/{2**63}/{verb}", headers=headers, content="{}")
    assert huge.status_code == 422
    [record, *_] = populated.list_actions()
    null = client.post(f"/api/v1/proposals/{record.id}/{verb}", headers=headers,
                       content="null")
    assert null.status_code == 200, null.text
