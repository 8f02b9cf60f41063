"""Diagnosis: playbooks first, an advisory LLM second (see ``factory.build_diagnoser``)."""
