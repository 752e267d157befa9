"""I/O adapters: Prometheus, the MLflow registry, PostgreSQL, the data lake, incident history.

Thin and tested against the real services; they may import the core and settings, nothing above.
"""
