"""Actuators and the change engine: guarded, commit-confirmed changes to the system."""
