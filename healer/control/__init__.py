"""The control plane's own work (``healer serve`` on PostgreSQL): the periodic fleet jobs,
run on one replica at a time, and the fleet's LLM answers handed to agents."""
