"""Delivery channels: Slack incoming webhook, signed generic JSON webhook, log line.

Every HTTP channel shares one ``httpx.Client`` with a short timeout so a dead endpoint
costs at most a few seconds of the delivery job, never the sampling loop.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from healer.logs import logfmt
from healer.notify.events import severity_rank
from healer.notify.formats import slack_payload
from healer.notify.signing import sign_webhook
from healer.settings import Settings

if TYPE_CHECKING:  # httpx (with click, pygments, rich) loads only when a hook is configured
    import httpx

HTTP_TIMEOUT_S, CONNECT_TIMEOUT_S = 3.0, 2.0
log = logging.getLogger("healer.notify")


class DeliveryError(Exception):
    """A send failed; ``permanent`` means retrying cannot help (4xx other than 408/429)."""

    def __init__(self, problem: str, *, permanent: bool = False) -> None:
        super().__init__(problem)
        self.permanent = permanent


class Channel(Protocol):
    """Sends one stored message; raises DeliveryError on failure."""

    name: str

    def send(self, message: Mapping[str, Any]) -> None: ...


def _post(client: httpx.Client, url: str, body: bytes, headers: Mapping[str, str]) -> None:
    import httpx

    try:
        resp = client.post(url, content=body, headers={"Content-Type": "application/json",
                                                       **headers})
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}"[:300]) from exc
    if resp.is_success:
        return
    permanent = 400 <= resp.status_code < 500 and resp.status_code not in (408, 429)
    raise DeliveryError(f"HTTP {resp.status_code}", permanent=permanent)


class SlackChannel:
    """Slack (and Mattermost / Rocket.Chat) incoming webhook."""

    name = "slack"

    def __init__(self, url: str, client: httpx.Client, *, interactive: bool) -> None:
        self._url, self._client, self._interactive = url, client, interactive

    def send(self, message: Mapping[str, Any]) -> None:
        """Post the Block Kit rendering of ``message``."""
        body = json.dumps(slack_payload(message, interactive=self._interactive)).encode()
        _post(self._client, self._url, body, {})


class WebhookChannel:
    """Generic JSON webhook; the body is the stored message, signed (see healer.notify.signing)."""

    name = "webhook"

    def __init__(self, url: str, client: httpx.Client, secret: str | None,
                 clock: Callable[[], float] = time.time) -> None:
        self._url, self._client, self._secret, self._clock = url, client, secret, clock

    def send(self, message: Mapping[str, Any]) -> None:
        """Post ``message`` as compact JSON with the HMAC headers."""
        body = json.dumps(message, separators=(",", ":"), sort_keys=True).encode()
        headers = {"X-Healer-Event": str(message.get("event", "")),
                   "X-Healer-Delivery": str(message.get("id", ""))}
        if self._secret:
            ts = str(int(self._clock()))
            headers["X-Healer-Timestamp"] = ts
            headers["X-Healer-Signature"] = sign_webhook(self._secret, ts, body)
        _post(self._client, self._url, body, headers)


class LogChannel:
    """One structured log line per notification (always available)."""

    name = "log"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or log

    def send(self, message: Mapping[str, Any]) -> None:
        """Log the message at a level matching its severity."""
        sev = str(message.get("severity", "info"))
        level = logging.WARNING if severity_rank(sev) >= 2 else logging.INFO
        self._log.log(level, logfmt(msg=f"notify {message.get('event')}", severity=sev,
                                    subject=message.get("subject"), title=message.get("title"),
                                    link=message.get("link") or ""))


def build_channels(settings: Settings, client: httpx.Client | None = None) -> dict[str, Channel]:
    """The channels ``settings`` configures: always ``log``, plus slack and webhook when set."""
    channels: dict[str, Channel] = {"log": LogChannel()}
    if (settings.slack_webhook_url or settings.webhook_url) and client is None:
        import httpx

        client = httpx.Client(timeout=httpx.Timeout(HTTP_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
                              follow_redirects=False)
    if settings.slack_webhook_url and client is not None:
        channels["slack"] = SlackChannel(settings.slack_webhook_url, client,
                                         interactive=settings.slack_signing_secret is not None)
    if settings.webhook_url and client is not None:
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        if secret is None:
            log.warning(logfmt(msg="webhook has no secret; deliveries are unsigned"))
        channels["webhook"] = WebhookChannel(settings.webhook_url, client, secret)
    return channels
