"""healer's web side: ``create_app(settings, repo=..., telemetry=..., live=...)``."""

from web.app import create_app
from web.live import LiveState, WindowLive

__all__ = ["LiveState", "WindowLive", "create_app"]
