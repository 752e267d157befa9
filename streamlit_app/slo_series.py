"""What Prometheus knows about the SLOs, as small DataFrames for tables and charts.

Everything is read from the recording rules the SLO specs generate (`slo/rulegen.py`), so the
UI shows exactly what the alerts evaluate. A tier's burn is the smaller of its two windows' burn
rates: the alert fires when both exceed the tier's factor, so that is the number to compare.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from slo_pipeline.adapters.prometheus import SeriesBlock, fetch_range
from slo_pipeline.adapters.prometheus_connection import PrometheusConnection
from slo_pipeline.slo.burnrate import TIERS, BurnTier
from slo_pipeline.slo.spec import SLO

# The UI waits at most this long on Prometheus, so a hung server still leaves the page usable:
# one wait per page view (adapters/outages.py) plus drawing stays within the 5 s.
PROMETHEUS_TIMEOUT_SECONDS = 2.5
SPARKLINE_HOURS = 24
SPARKLINE_POINTS = 96
ID_LABELS = "sloth_id, sloth_service, sloth_slo"


def window_burn_expr(window: str, slo_filter: str = "") -> str:
    """Burn rate over one window: error ratio / error budget (1 = spending exactly on budget)."""
    return (
        f"(slo:sli_error:ratio_rate{window}{slo_filter} "
        f"/ on ({ID_LABELS}) group_left () slo:error_budget:ratio{slo_filter})"
    )


def tier_burn_expr(tier: BurnTier, slo_filter: str = "") -> str:
    return (
        f"min by (slo) ({window_burn_expr(tier.short, slo_filter)} "
        f"or {window_burn_expr(tier.long, slo_filter)})"
    )


def slo_filter(name: str) -> str:
    # SLO names are [A-Za-z0-9][A-Za-z0-9_.-]* (spec-validated): nothing to escape in a label value.
    return '{slo="' + name + '"}'


@dataclass(frozen=True)
class Overview:
    """Per SLO: the latest value and a day of history of its remaining budget and tier burns."""

    budget_remaining: dict[str, list[float]]
    tier_burn: dict[str, dict[str, list[float]]]  # tier -> slo -> values

    def latest(self, values: list[float]) -> float | None:
        finite = [v for v in values if np.isfinite(v)]
        return finite[-1] if finite else None


def fetch_overview(prometheus: str | PrometheusConnection, now: float | None = None) -> Overview:
    end = time.time() if now is None else now
    start = end - SPARKLINE_HOURS * 3600
    step = float(SPARKLINE_HOURS * 3600 // SPARKLINE_POINTS)

    def by_slo(query: str) -> dict[str, list[float]]:
        block = _fetch(prometheus, query, start, end, step)
        return {
            labels.get("slo", ""): _finite_list(block.values[:, i]) for i, labels in enumerate(block.labels)
        }

    return Overview(
        budget_remaining=by_slo("max by (slo) (slo:period_error_budget_remaining:ratio)"),
        tier_burn={tier.burn_tier: by_slo(tier_burn_expr(tier)) for tier in TIERS},
    )


def overview_rows(slos: Sequence[SLO], overview: Overview) -> list[dict[str, object]]:
    """One table row per SLO; sparkline columns hold lists (NaN-free), values are the latest."""
    rows = []
    for slo in slos:
        budget = overview.budget_remaining.get(slo.name, [])
        latest = overview.latest(budget)
        row: dict[str, object] = {
            "name": slo.name,
            "objective %": slo.block.objective,
            "period": slo.block.time_period,
            "budget left %": None if latest is None else round(100 * latest, 1),
            "budget (24 h)": [100 * v for v in budget],
        }
        for tier in TIERS:
            burn = overview.tier_burn[tier.burn_tier].get(slo.name, [])
            value = overview.latest(burn)
            factor = float(tier.factor(slo.period_days))
            row[f"{tier.burn_tier} {tier.short}/{tier.long}"] = None if value is None else round(value, 2)
            row[f"{tier.burn_tier} factor"] = factor
            row[f"{tier.burn_tier} (24 h)"] = burn
        rows.append(row)
    return rows


@dataclass(frozen=True)
class Detail:
    budget_remaining: pd.DataFrame  # time, value (ratio)
    error_ratio: pd.DataFrame  # time, window, value
    tier_burn: pd.DataFrame  # time, tier, value
    alerts: pd.DataFrame  # start, end, name (from Prometheus' ALERTS)


def fetch_detail(prometheus: str | PrometheusConnection, slo: SLO, start: float, end: float) -> Detail:
    step = float(max(60, math.ceil((end - start) / 300)))
    flt = slo_filter(slo.name)
    budget = _fetch(prometheus, f"max(slo:period_error_budget_remaining:ratio{flt})", start, end, step)
    ratios = []
    for window in ("5m", "1h"):
        block = _fetch(prometheus, f"max(slo:sli_error:ratio_rate{window}{flt})", start, end, step)
        ratios.append(_long_frame(block, window=window))
    burns = [
        _long_frame(_fetch(prometheus, tier_burn_expr(tier, flt), start, end, step), tier=tier.burn_tier)
        for tier in TIERS
    ]
    alerts_block = _fetch(
        prometheus,
        f'max by (alertname, burn_tier) (ALERTS{{slo="{slo.name}", alertstate="firing"}})',
        start,
        end,
        step,
    )
    return Detail(
        budget_remaining=_long_frame(budget),
        error_ratio=pd.concat(ratios, ignore_index=True),
        tier_burn=pd.concat(burns, ignore_index=True),
        alerts=firing_intervals(alerts_block, step),
    )


def firing_intervals(block: SeriesBlock, step: float) -> pd.DataFrame:
    """Contiguous runs of samples per alert series as `start`, `end`, `name` rows (a run covers
    its last sample's step, so a one-sample alert still shows)."""
    rows = []
    times = block.timestamps
    for i, labels in enumerate(block.labels):
        present = np.isfinite(block.values[:, i])
        name = " ".join(v for k, v in sorted(labels.items()) if k != "__name__") or "alert"
        run_start = None
        for j, on in enumerate(present):
            if on and run_start is None:
                run_start = times[j]
            if run_start is not None and (not on or j == len(present) - 1):
                last = times[j] if on else times[j - 1]
                rows.append({"start": _ts(run_start), "end": _ts(last + step), "name": name})
                run_start = None
    return pd.DataFrame(rows, columns=["start", "end", "name"])


def _fetch(
    prometheus: str | PrometheusConnection, query: str, start: float, end: float, step: float
) -> SeriesBlock:
    return fetch_range(
        prometheus, query, start=start, end=end, step_seconds=step, timeout=PROMETHEUS_TIMEOUT_SECONDS
    )


def _long_frame(block: SeriesBlock, **constant: str) -> pd.DataFrame:
    """`time, value` rows (plus constant columns) of the block's first series, NaNs dropped."""
    columns = ["time", *constant, "value"]
    if block.n_series == 0:
        return pd.DataFrame(columns=columns)
    values = block.values[:, 0]
    keep = np.isfinite(values)
    frame = pd.DataFrame({"time": pd.to_datetime(block.timestamps[keep], unit="s", utc=True)})
    for key, value in constant.items():
        frame[key] = value
    frame["value"] = values[keep]
    return frame[columns]


def _finite_list(values: np.ndarray) -> list[float]:
    return [float(v) for v in values if np.isfinite(v)]


def _ts(seconds: float) -> pd.Timestamp:
    return pd.Timestamp(seconds, unit="s", tz="UTC")
