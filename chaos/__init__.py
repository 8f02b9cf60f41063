"""Chaos runs: inject real faults into a sandbox and watch a real ``healer run`` heal them.

``healer chaos list | run NAME [--json] [--report DIR] [--keep] | suite [--quick] [--json]
[--report DIR]``. The package imports nothing of healer's: it starts the daemon as a
subprocess confined by ``HEALER_*`` settings and observes it through its HTTP API.

Layout: ``faults`` (inject/revert/is_active with TTL watchdogs, ``watchdog``, ``undo``),
``sandbox`` (netns, ``cgroups`` v1/v2, scratch dirs, ``gpusim``), ``workloads/`` (small real
programs), ``scenarios/`` (SCENARIOS.md, one class per row), ``daemon`` (the healer
subprocess), ``runner`` (the fixed sequence of steps and cleanup), ``report``/``svg``
(json, md, self-contained html), ``progress``.
"""
