"""Shipped with the package as slo_pipeline.resources data (see pyproject.toml); no code."""
