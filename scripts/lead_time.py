"""Lead time of the anomaly alert over the SLO's 14.4x page, and false alarms on clean traffic.

Run: `.venv/bin/python scripts/lead_time.py [--seeds 0,1,2] [--clean-weeks 1] [--incidents 20]`

Pure simulation with a fixed seed (reproducible): the simulated service
(`slo_pipeline.devstack.simulator.model`, 60 s steps), a detector on the 5-minute 5xx ratio of each route,
and the checkout route's availability SLO (99.9 %, as in examples/slos.yml). The detector is
trained on a clean week, then scores (causally, no retraining):

1. `--clean-weeks` more clean weeks: alert onsets (the shipped rule, for 2m / keep_firing_for
   15m) = false alarms per simulated series-week, also per route;
2. a week with checkout error bursts of random magnitude (1-30 % of requests, log-uniform, one
   hour each, every 8 h): for each, the first anomaly alert vs the first minute the 14.4x
   burn-rate page condition holds (5m and 1h burn rate both > 14.4).

Prints one row per incident and a summary per seed (median lead time; target >= 5 min, <= 1
false alarm per series per clean week). With several seeds (each: new traffic, new model) it also
prints the totals over seeds: one week of training pins a 1-in-10^4 tail from a handful of
events, so a single seed's clean week ranges from 0 to ~3 alarms per series; the budget is a mean.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from slo_pipeline.core.alert_sim import AlertRule, simulate_alerts
from slo_pipeline.core.features import compute_features
from slo_pipeline.core.training import fit_detector_model
from slo_pipeline.devstack.simulator.model import (
    DEFAULT_ROUTES,
    SERVER_ERROR_CODE_INDEX,
    Incident,
    sample_intervals,
)
from slo_pipeline.settings import DetectorConfig

STEP = 60
DAY = 1440  # samples
OBJECTIVE = 0.999
PAGE_BURN = 14.4
CHECKOUT = "/api/checkout"
RULE = AlertRule(for_steps=2, keep_firing_steps=15)


def simulate(start: float, n_steps: int, incidents: list[Incident], rng: np.random.Generator) -> np.ndarray:
    """Per-minute [requests, errors] per route: `[n_steps, routes, 2]`."""
    starts = start + STEP * np.arange(n_steps)
    sample = sample_intervals(starts, starts + STEP, incidents=incidents, rng=rng)
    total = sample.requests.sum(axis=1)  # requests are [routes, status codes, steps]
    errors = sample.requests[:, SERVER_ERROR_CODE_INDEX, :]
    return np.stack([total.T, errors.T], axis=-1).astype(np.float64)


def error_ratio(counts: np.ndarray, window: int) -> np.ndarray:
    """`sum(errors) / sum(requests)` over trailing `window` minutes, as rate()[window] ratios."""
    cumulative = np.cumsum(counts, axis=0)
    lagged = np.vstack([np.zeros((window, *counts.shape[1:])), cumulative[:-window]])
    summed = cumulative - lagged
    with np.errstate(invalid="ignore", divide="ignore"):
        return summed[..., 1] / summed[..., 0]


@dataclass(frozen=True)
class SeedResult:
    seed: int
    false_alarms: np.ndarray  # alert onsets per route over the clean weeks
    clean_weeks: int
    leads: list[int]  # minutes from the anomaly alert to the page, bursts with both
    alerted: int
    paged: int
    onset_factor: float
    threshold: float

    @property
    def per_series_week(self) -> float:
        return float(self.false_alarms.sum() / (len(self.false_alarms) * self.clean_weeks))


def run(seed: int, n_incidents: int, clean_weeks: int, show_incidents: bool) -> SeedResult:
    rng = np.random.default_rng(seed)
    t0 = 1_700_000_000.0
    detector = DetectorConfig(name="errors", query="x", step_seconds=STEP, false_alarms_per_week=1.0)
    checkout = [route.route for route in DEFAULT_ROUTES].index(CHECKOUT)

    train = simulate(t0, 7 * DAY, [], rng)
    model, report = fit_detector_model(error_ratio(train, 5), detector, seed=seed, rule=RULE)
    threshold = model.alarm_threshold(detector.false_alarms_per_week, STEP)

    def alarms(counts: np.ndarray) -> np.ndarray:
        history = np.concatenate([train, counts])
        features = compute_features(error_ratio(history, 5), model.windows)
        p = model.feature_tail_probability(features)[len(train) :]
        _, onsets = simulate_alerts(model.anomaly_scores(np.nan_to_num(p, nan=1.0), threshold), RULE)
        return onsets

    clean_start = t0 + 7 * DAY * STEP
    clean = simulate(clean_start, clean_weeks * 7 * DAY, [], rng)
    false_alarms = alarms(clean).sum(axis=0)

    incident_start = clean_start + clean_weeks * 7 * DAY * STEP
    spacing = 8 * 60
    magnitudes = np.exp(rng.uniform(np.log(0.01), np.log(0.30), n_incidents))
    incidents = [
        Incident("error_burst", incident_start + (k * spacing + 120) * STEP, 3600.0, float(m), CHECKOUT)
        for k, m in enumerate(magnitudes)
    ]
    burst = simulate(incident_start, n_incidents * spacing, incidents, rng)
    onsets = alarms(burst)[:, checkout]
    history = np.concatenate([train, clean, burst])
    burn_5m = error_ratio(history, 5)[-len(burst) :, checkout] / (1 - OBJECTIVE)
    burn_1h = error_ratio(history, 60)[-len(burst) :, checkout] / (1 - OBJECTIVE)
    page = (burn_5m > PAGE_BURN) & (burn_1h > PAGE_BURN)

    if show_incidents:
        print(f"\n{'incident':>8}  {'5xx share':>9}  {'anomaly alert':>13}  {'14.4x page':>10}  {'lead':>6}")
    leads = []
    alerted = paged_count = 0
    for k, magnitude in enumerate(magnitudes):
        first = k * spacing + 120
        span = slice(first, first + 120)  # the hour of the burst and the hour after it
        alert = _first(onsets[span])
        paged = _first(page[span])
        alerted += alert is not None
        paged_count += paged is not None
        lead = None if alert is None or paged is None else paged - alert
        if lead is not None:
            leads.append(lead)
        if show_incidents:
            print(
                f"{k:>8}  {magnitude:>9.1%}  {_minutes(alert):>13}  {_minutes(paged):>10}  "
                f"{'-' if lead is None else f'{lead:+d}m':>6}"
            )
    return SeedResult(
        seed=seed,
        false_alarms=false_alarms,
        clean_weeks=clean_weeks,
        leads=leads,
        alerted=alerted,
        paged=paged_count,
        onset_factor=report.onset_factor,
        threshold=threshold,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default=None, help="comma-separated seeds, e.g. 0,1,2 (default: --seed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--incidents", type=int, default=20)
    parser.add_argument("--clean-weeks", type=int, default=1, help="clean weeks scored per seed")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    if args.clean_weeks < 1 or args.incidents < 1:
        parser.error("--clean-weeks and --incidents must be >= 1")
    routes = [route.route for route in DEFAULT_ROUTES]
    results = []
    for seed in seeds:
        result = run(seed, args.incidents, args.clean_weeks, show_incidents=len(seeds) == 1)
        results.append(result)
        per_route = ", ".join(
            f"{r} {n}" for r, n in zip(routes, result.false_alarms.astype(int), strict=True)
        )
        median = f"{np.median(result.leads):+.0f} min (n={len(result.leads)})" if result.leads else "-"
        print(
            f"seed {seed}: clean {result.clean_weeks} week(s): {int(result.false_alarms.sum())} "
            f"anomaly alerts ({per_route}) = {result.per_series_week:.2f} per series-week; incidents alerted "
            f"{result.alerted}/{args.incidents}, paged {result.paged}; median lead {median}; "
            f"onset factor {result.onset_factor:.3f}, per-sample threshold {result.threshold:.2e}"
        )
    rates = np.array([r.per_series_week for r in results])
    leads = [lead for r in results for lead in r.leads]
    by_route = np.sum([r.false_alarms for r in results], axis=0) / (len(seeds) * args.clean_weeks)
    spread = f" (sd {rates.std(ddof=1):.2f} between seeds)" if len(seeds) > 1 else ""
    print(
        f"\nclean traffic, {len(seeds)} seed(s) x {args.clean_weeks} week(s): "
        f"{rates.mean():.2f} false alarms per series-week{spread}; budget 1, target <= 1"
    )
    print("  per route: " + ", ".join(f"{r} {v:.2f}" for r, v in zip(routes, by_route, strict=True)))
    print(
        f"incidents alerted: {sum(r.alerted for r in results)}/{len(seeds) * args.incidents}; "
        f"paged: {sum(r.paged for r in results)}"
    )
    if leads:
        print(
            f"median lead over the 14.4x page (incidents with both): {np.median(leads):+.0f} min "
            f"(n={len(leads)}; target >= 5)"
        )
    return 0


def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if len(hits) else None


def _minutes(offset: int | None) -> str:
    return "never" if offset is None else f"+{offset}m"


if __name__ == "__main__":
    raise SystemExit(main())
