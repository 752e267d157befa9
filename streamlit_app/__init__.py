"""Operator UI: SLOs, incidents and feedback, model versions."""
