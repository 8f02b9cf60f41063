"""The Repository: every SQL statement healer runs, one short transaction per call.

Methods take and return domain models (``healer.models``) or the frozen rows in
``healer.store.rows``; never result rows or dicts. The methods are grouped by area in
``repo_*.py`` and composed here.
"""

from __future__ import annotations

from healer.store.repo_base import Clock, utcnow
from healer.store.repo_credentials import CredentialsRepo
from healer.store.repo_fleet import FleetRepo
from healer.store.repo_hosts import HostsRepo
from healer.store.repo_journal import JournalRepo
from healer.store.repo_llm import LLMRepo
from healer.store.repo_outbox import OutboxRepo
from healer.store.repo_people import PeopleRepo
from healer.store.repo_samples import SamplesRepo
from healer.store.repo_silences import SilencesRepo


class Repository(JournalRepo, PeopleRepo, CredentialsRepo, OutboxRepo, SamplesRepo,
                 SilencesRepo, LLMRepo, HostsRepo, FleetRepo):
    """``Repository(engine, host_id, clock=utcnow)``: the store's whole API."""


__all__ = ["Clock", "Repository", "utcnow"]
