"""Orchestration: wires the core to the adapters (retraining) and the CLI commands for it."""
