"""healer.heap: what start-up built leaves the collector's view; later cycles are still
collected. In a child interpreter: freezing pytest's own heap would outlive the test."""

from __future__ import annotations

import json
import subprocess
import sys

from healer.heap import YOUNG_THRESHOLD

CHILD = """
import gc, json, weakref
from healer import heap

class Node:
    pass

def cycle():
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)

before = cycle()  # garbage from start-up: collected by settle, not frozen
kept = [Node() for _ in range(1000)]  # what start-up built and keeps
heap.settle()
frozen = gc.get_freeze_count()
after = cycle()
gc.collect()
print(json.dumps({"frozen": frozen, "threshold": gc.get_threshold()[0],
                  "before_gone": before() is None, "after_gone": after() is None,
                  "kept_frozen": not any(gc.is_tracked(n) and n in gc.get_objects()
                                         for n in kept[:3])}))
"""


def _child() -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                         check=True, timeout=60)
    return json.loads(out.stdout)


def test_settle_freezes_what_start_up_kept_and_cycles_made_later_are_still_collected() -> None:
    seen = _child()
    assert seen["frozen"] >= 1000  # the kept nodes, at least, left the collector's view
    assert seen["kept_frozen"] is True  # gc.get_objects() lists no frozen object
    assert seen["before_gone"] is True  # start-up's garbage was collected, not frozen
    assert seen["after_gone"] is True  # the collector still runs on what came later
    assert seen["threshold"] == YOUNG_THRESHOLD
