"""The explanation contract shared by the exporter (which publishes it) and the webhook (which reads it).

While a series scores `anomaly_score >= 1`, the exporter publishes
`anomaly_driver_info{<exactly anomaly_score's labels>, driver="<feature>"} 1`, where the feature is
the one with the largest robust |z| at the latest sample (`DetectorModel.explain_latest`); names
are opaque strings such as `level_vs_long` or, for multivariate detectors, `errors:level_vs_long`.
Because the label set equals the score's, an alert raised on that score carries every one of those
labels, which is how the webhook finds the driver of a new incident.
"""

from __future__ import annotations

DRIVER_INFO_METRIC = "anomaly_driver_info"
DRIVER_LABEL = "driver"
# A series is explained while its score is at least this: anomalous at the detector's budget.
EXPLAINED_SCORE = 1.0
