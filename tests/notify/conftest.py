from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from healer.notify.channels import DeliveryError
from healer.settings import Settings
from healer.store.engine import open_store
from healer.store.repository import Repository

T0 = datetime(2025, 10, 9, 12, 0, tzinfo=UTC)


class RecordingChannel:
    """A channel that records what it sends and fails its first ``fail`` sends."""

    def __init__(self, name: str, fail: int = 0, permanent: bool = False) -> None:
        self.name, self.fail, self.permanent = name, fail, permanent
        self.sent: list[Mapping[str, Any]] = []
        self.calls = 0

    def send(self, message: Mapping[str, Any]) -> None:
        self.calls += 1
        if self.calls <= self.fail:
            raise DeliveryError("HTTP 503", permanent=self.permanent)
        self.sent.append(message)


@pytest.fixture
def settings(tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    return Settings(state_dir=tmp_path / "state", host_id="test-host",
                    slack_webhook_url="http://127.0.0.1:9/slack",
                    webhook_url="http://127.0.0.1:9/hook", public_url="https://healer.example")


@pytest.fixture
def repo(settings: Settings) -> Repository:
    # The repository's clock stamps next_attempt; pin it so "due at T0" is exact.
    return Repository(open_store(settings).engine, settings.host_id, clock=lambda: T0)
