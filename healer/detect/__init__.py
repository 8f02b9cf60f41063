"""Detection: playbook signals over the metric window and new kernel-log records -> incidents."""

from healer.detect.detector import DetectEvent, Detector
from healer.detect.incidents import (
    IncidentChange,
    IncidentSink,
    IncidentTracker,
    MemorySink,
    RepositorySink,
)
from healer.detect.view import WindowView

__all__ = [
    "DetectEvent",
    "Detector",
    "IncidentChange",
    "IncidentSink",
    "IncidentTracker",
    "MemorySink",
    "RepositorySink",
    "WindowView",
]
