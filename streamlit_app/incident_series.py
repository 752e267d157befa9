"""The time series around one incident: the detector's anomaly score, the SLI that drove it and
the SLO's burn rate, from Prometheus, as `time, series, value` frames for charts."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from slo_pipeline.adapters.prometheus import SeriesBlock, fetch_range
from slo_pipeline.adapters.prometheus_connection import PrometheusConnection
from slo_pipeline.settings import DetectorConfig
from streamlit_app.slo_series import PROMETHEUS_TIMEOUT_SECONDS, slo_filter, window_burn_expr

BEFORE_SECONDS = 2 * 3600
AFTER_SECONDS = 3600
# An incident still firing after days is shown from its start for this long, not to "now".
LONGEST_SECONDS = 2 * 86400
# Labels that say which alert or detector it was, not which series: never used to pick a series.
NOT_SERIES_LABELS = frozenset({"__name__", "alertname", "detector", "slo", "severity", "job", "instance"})


@dataclass(frozen=True)
class IncidentSeries:
    start: float
    end: float
    span: pd.DataFrame  # one row: start, end, name
    score: pd.DataFrame
    sli: pd.DataFrame
    sli_title: str
    slo_burn: pd.DataFrame


def matching_columns(block: SeriesBlock, incident_labels: Mapping[str, Any]) -> list[int]:
    """Series of `block` that are the incident's: every label they share with it has its value.

    An incident raised for one route matches that route's series; a detector-wide incident
    (no series labels) matches all of them.
    """
    wanted = {k: str(v) for k, v in incident_labels.items() if k not in NOT_SERIES_LABELS}
    return [
        i
        for i, labels in enumerate(block.labels)
        if all(labels.get(k) == v for k, v in wanted.items() if k in labels)
    ]


def series_name(labels: Mapping[str, str]) -> str:
    shown = {k: v for k, v in labels.items() if k not in NOT_SERIES_LABELS}
    return ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "all series"


def to_frame(block: SeriesBlock, columns: list[int], prefix: str = "") -> pd.DataFrame:
    parts = []
    for i in columns:
        values = block.values[:, i]
        keep = np.isfinite(values)
        parts.append(
            pd.DataFrame(
                {
                    "time": pd.to_datetime(block.timestamps[keep], unit="s", utc=True),
                    "series": prefix + series_name(block.labels[i]),
                    "value": values[keep],
                }
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["time", "series", "value"])


def driving_query(detector: DetectorConfig, driver: str | None) -> tuple[str, str]:
    """(title, PromQL) of the SLI to plot: the signal a `signal:feature` driver names, else the
    detector's (first) query."""
    queries = dict(detector.queries)
    if driver and ":" in driver:
        signal = driver.split(":", 1)[0]
        if signal in queries:
            return signal, queries[signal]
    name, query = detector.queries[0]
    return name or detector.name, query


def fetch_incident_series(
    prometheus: str | PrometheusConnection, incident: Mapping[str, Any], detector: DetectorConfig, now: float
) -> IncidentSeries:
    started = _seconds(incident["starts_at"])
    ended = _seconds(incident["ends_at"]) if incident.get("ends_at") else now
    start, end = started - BEFORE_SECONDS, min(now, ended + AFTER_SECONDS, started + LONGEST_SECONDS)
    step = float(max(detector.step_seconds, math.ceil((end - start) / 400)))
    labels = incident.get("labels") or {}

    def fetch(query: str) -> SeriesBlock:
        return fetch_range(
            prometheus, query, start=start, end=end, step_seconds=step, timeout=PROMETHEUS_TIMEOUT_SECONDS
        )

    score_block = fetch(f'anomaly_score{{detector="{detector.name}"}}')
    title, query = driving_query(detector, incident.get("driver"))
    sli_block = fetch(query)
    burn = pd.DataFrame(columns=["time", "series", "value"])
    slo = incident.get("slo") or detector.slo
    if slo:
        blocks = {w: fetch(f"max({window_burn_expr(w, slo_filter(slo))})") for w in ("5m", "1h")}
        parts = [to_frame(b, list(range(b.n_series)), f"{w} ") for w, b in blocks.items()]
        burn = pd.concat([p for p in parts if not p.empty] or [burn], ignore_index=True)
        burn["series"] = burn["series"].str.replace(" all series", " burn rate", regex=False)
    span = pd.DataFrame(
        {"start": [_ts(started)], "end": [_ts(ended)], "name": [f"incident #{incident['id']}"]}
    )
    return IncidentSeries(
        start=start,
        end=end,
        span=span,
        score=to_frame(score_block, matching_columns(score_block, labels)),
        sli=to_frame(sli_block, matching_columns(sli_block, labels)),
        sli_title=title,
        slo_burn=burn,
    )


def _seconds(value: Any) -> float:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return float(pd.Timestamp(value).timestamp())


def _ts(seconds: float) -> pd.Timestamp:
    return pd.Timestamp(seconds, unit="s", tz="UTC")
