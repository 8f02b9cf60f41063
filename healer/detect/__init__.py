"""Detection: playbook signals over the metric window and new kernel-log records -> incidents."""

from healer.detect.detector import Detector
from healer.detect.events import DetectEvent
from healer.detect.incidents import (
    IncidentChange,
    IncidentSink,
    IncidentTracker,
    MemorySink,
    RepositorySink,
)
from healer.detect.unknown import UnknownPath
from healer.detect.view import WindowView
from healer.models import UNCLASSIFIED

__all__ = [
    "UNCLASSIFIED",
    "DetectEvent",
    "Detector",
    "IncidentChange",
    "IncidentSink",
    "IncidentTracker",
    "MemorySink",
    "RepositorySink",
    "UnknownPath",
    "WindowView",
]
