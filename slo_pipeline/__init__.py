"""slo-pipeline: SLO-oriented anomaly detection for Prometheus (shared logic for every service)."""

__version__ = "0.1.0"
