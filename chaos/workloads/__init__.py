"""Small real programs the scenarios run: ``python -m chaos.workloads.<name> --help``.

They import nothing of healer's; each does one thing a real service would do, and those
that report an SLO write it as a Prometheus textfile (node_exporter's textfile format).
"""
