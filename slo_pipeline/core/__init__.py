"""The pure detection core: features, model, calibration, training, validation, alert simulation.

No I/O and no imports of adapters, services, the UI or the dev stack (enforced by import-linter).
"""
