"""The exporter: scores Prometheus series with the champion model and serves anomaly metrics."""
