"""The agent's side of the fleet: the control-plane protocol (docs/fleet-protocol.md).

``link.FleetLink`` composes it: ``leases`` (the change engine's gate), ``sender``
(heartbeats and the report outbox), ``events`` (the long poll), each on its own thread,
over ``transport`` (the standard library's HTTP and TLS, the host token in this process
only).
"""
