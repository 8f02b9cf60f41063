"""``healer fleet sim``: real agents (journal, guard, change engine, seal, fleet link) on
simulated hosts, against two real ``healer serve`` replicas on PostgreSQL.

Only the collectors and actuators are simulated (healer.sim.host); everything else is the
production code a ``healer run --control-plane`` agent runs. See docs/fleet-sim.md.
"""

# The scenarios, in the order the report lists them (healer.sim.run plays them).
SCENARIOS = ("storm", "bad-fix", "systemic", "kill", "webhooks")
