"""Diagnosis: the playbook's answer always; an advisory LLM beside it (``pending``, ``opinion``)."""
