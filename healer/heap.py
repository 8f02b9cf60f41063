"""The cyclic garbage collector, set for a process that runs for long.

CPython's collector walks every object it tracks on each full (oldest-generation)
collection, and a started process tracks hundreds of thousands that live until it exits:
modules, classes, the web app, the policy, compiled SQL. On a control-plane replica under
load, one full collection took 0.3 to 0.9 s of wall time, with its event loop stopped;
in a simulation worker, 60 to 110 ms with every agent's cycle stopped.

``settle`` is called once start-up is done. It moves what start-up built into the
permanent generation (``gc.freeze``), which no collection walks again, and it makes the
youngest generation bigger, so the collector runs less often over the short-lived objects
of each request or cycle. Those are freed by reference counting as soon as they are
dropped, unless they form cycles, which then wait a little longer.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000  # allocations between young collections; CPython's default is 700


def settle() -> None:
    """Freeze what exists now out of the collector's view, and collect young objects less
    often from now on."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, oldest)
