"""SLO-based validation against real recording-rule history, not hand-made intervals.

What is built (once per module, ~25 s):

1. Two days of the simulated service's counters (slo_pipeline.devstack.simulator.history), with one real
   incident three hours before the end: 45 minutes in which a quarter of all requests fail
   (50x the 0.5% budget of `demo-availability`). Backfilled with `promtool tsdb
   create-blocks-from openmetrics`.
2. The SLO's recording rules, rendered from examples/slos.yml by the project's rulegen, evaluated
   over those two days with `promtool tsdb create-blocks-from rules` against a real Prometheus on
   that TSDB. promtool evaluates every rule against what Prometheus already holds, so rules that
   read other recording rules (`slo:current_burn_rate:ratio`, the period ratios) need the blocks
   of the rules they read first: one run per dependency level, Prometheus restarted on the
   grown TSDB in between (launch.backfill_recording_rules). Prometheus 2.42 merges the
   overlapping blocks itself (overlapping blocks are allowed by default since 2.39).
   Alerting rules are skipped by promtool, so the TSDB holds no `ALERTS` at all.

What is proven:

- slo_evidence finds exactly the real breach and its 14.4x page in that history, although
  `ALERTS` is absent (it derives the page tiers' conditions from the recorded ratios), and the
  derivation matches the generated alert rule's own expression sample for sample. The naive
  `slo:current_burn_rate:ratio > 1` would have reported many breaches in the healthy service.
- retrain (real MLflow on sqlite, real PostgreSQL) validates against that history: a normally
  trained candidate alarms during the breach, ahead of the page, and is promoted; a candidate
  trained while the service was flapping (recurring error bursts nobody recorded as incidents,
  so it learned 25% errors as normal) stays silent through the breach and is rejected with a
  reason naming the SLO, recorded on its MLflow version.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from slo_pipeline.adapters import registry
from slo_pipeline.adapters.postgres import connect
from slo_pipeline.adapters.prometheus import fetch_range
from slo_pipeline.core.rule_timing import RuleTiming, anomaly_alert_rule
from slo_pipeline.core.slo_gate import onset_times
from slo_pipeline.core.slo_history import due_instants
from slo_pipeline.core.training import fit_detector_model
from slo_pipeline.devstack import launch
from slo_pipeline.devstack.simulator.history import write_history
from slo_pipeline.devstack.simulator.model import Incident
from slo_pipeline.orchestration.retrain import (
    MlflowRegistry,
    PrometheusSloEvidence,
    judge_and_register,
    prepare_training_data,
    retrain_detector,
)
from slo_pipeline.settings import PipelineConfig, Settings, load_pipeline_config, load_settings
from slo_pipeline.slo import store
from slo_pipeline.slo.burnrate import TIERS
from slo_pipeline.slo.evidence import fetch_slo_evidence, tier_condition_query
from slo_pipeline.slo.history import SETTLE_SECONDS, snapshot_pass
from slo_pipeline.slo.rulegen import render_rule_files
from slo_pipeline.slo.spec import parse_specs
from tests.fixtures.database import fetch_all
from tests.fixtures.paths import REPO_ROOT
from tests.fixtures.services import prometheus_query
from tests.fixtures.simulated import last_anchor
from tests.integration.test_slo_evidence_fetch import seed_incident

pytestmark = pytest.mark.integration

SLO = "demo-availability"
DETECTOR = "demo_error_ratio"  # slo-pipeline.yml: per-route 5xx ratio, `slo: demo-availability`
STEP = 60
HOUR = 3600.0
TRAINING_WINDOW = 2 * 86400  # the held-out 15% is the last 7.2 h
HISTORY_SECONDS = TRAINING_WINDOW + 2 * HOUR
# Inside the held-out window, with room for the lead (1 h) and recovery (30 min) margins and the
# 3.6 h of healthy time the policy needs at this window length.
BURST_BEFORE_END = 3 * HOUR
BURST_SECONDS = 45 * 60
BURST_MAGNITUDE = 0.25


@dataclass(frozen=True)
class History:
    tsdb: Path
    rule_file: Path
    end: float
    burst: Incident


def pipeline_config() -> PipelineConfig:
    """The shipped detector, with a two-day window so the backfill stays short."""
    shipped = load_pipeline_config(REPO_ROOT / "slo-pipeline.yml").detector(DETECTOR)
    assert shipped.slo == SLO
    detector = shipped.model_copy(update={"training_window_seconds": TRAINING_WINDOW})
    return PipelineConfig(detectors=[detector])


def render_slo_rules(out: Path) -> Path:
    """The SLO's rules as `slo-pipeline rules render -f examples/slos.yml` writes them (this SLO only:
    the other two would triple promtool's work without adding anything here)."""
    specs = parse_specs((REPO_ROOT / "examples" / "slos.yml").read_text(encoding="utf-8"))
    ((name, text),) = render_rule_files([slo for slo in specs if slo.name == SLO]).items()
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(text, encoding="utf-8")
    return out / name


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    folder = tmp_path_factory.mktemp("slo-history")
    # Pinned to a time of day, so the verdicts below are judged on the same series every run.
    end = last_anchor(time.time() - 2 * STEP)
    start = end - HISTORY_SECONDS
    burst = Incident("error_burst", end - BURST_BEFORE_END, BURST_SECONDS, BURST_MAGNITUDE)
    openmetrics = folder / "history.om"
    write_history(openmetrics, start=start, end=end, step_seconds=STEP, seed=7, incidents=[burst])
    tsdb = folder / "tsdb"
    launch.backfill_openmetrics(openmetrics, tsdb)
    openmetrics.unlink()

    rule_file = render_slo_rules(folder / "rules")
    # Prometheus only serves the data promtool reads; it evaluates no rules itself.
    config = launch.write_prometheus_config(
        folder / "prometheus.yml", scrape_targets={}, alertmanager_url=None, rule_files=[]
    )
    added = launch.backfill_recording_rules(
        [rule_file],
        data_dir=tsdb,
        start=start,
        end=end,
        work_dir=folder / "rule-backfill",
        start_prometheus=lambda data_dir: launch.start_prometheus(config_file=config, data_dir=data_dir),
    )
    assert added > 0
    return History(tsdb=tsdb, rule_file=rule_file, end=end, burst=burst)


@pytest.fixture
def prometheus(
    history: History, prometheus_factory: Callable[..., launch.ManagedProcess]
) -> launch.ManagedProcess:
    return prometheus_factory(data_dir=history.tsdb)


@pytest.fixture
def settings(tmp_path: Path, database_url: str, prometheus: launch.ManagedProcess) -> Settings:
    return load_settings(
        prometheus_url=prometheus.url,
        database_url=database_url,
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        mlflow_artifact_root=str(tmp_path / "artifacts"),
        data_lake=str(tmp_path / "lake"),
        config_path=tmp_path / "absent.yml",
        pipeline=pipeline_config(),
    )


def held_out_times(history: History) -> np.ndarray:
    start = history.end - 0.15 * TRAINING_WINDOW
    return np.arange(np.ceil(start / STEP) * STEP, history.end + 1, STEP)


def fast_alert_expr(rule_file: Path) -> str:
    """The generated 14.4x page rule's expression, exactly as Prometheus would evaluate it."""
    groups = yaml.safe_load(rule_file.read_text(encoding="utf-8"))["groups"]
    (expr,) = [
        rule["expr"]
        for group in groups
        for rule in group["rules"]
        if rule.get("labels", {}).get("burn_tier") == "fast"
    ]
    return str(expr)


def firing(prometheus: launch.ManagedProcess, query: str, times: np.ndarray) -> np.ndarray:
    block = fetch_range(prometheus.url, query, start=times[0], end=times[-1], step_seconds=STEP)
    assert np.array_equal(block.timestamps, times)
    return np.isfinite(block.values).any(axis=1) if block.n_series else np.zeros(len(times), dtype=bool)


def test_evidence_is_the_real_breach_and_page_without_alerts_series(
    history: History, settings: Settings, prometheus: launch.ManagedProcess
) -> None:
    times = held_out_times(history)
    burst = history.burst

    # promtool skipped the alerting rules: no ALERTS anywhere in this history.
    assert prometheus_query(prometheus, "count(ALERTS)") == []
    assert prometheus_query(prometheus, f'slo:current_burn_rate:ratio{{slo="{SLO}"}}', time=burst.start + 600)

    evidence = fetch_slo_evidence(settings, slo=SLO, detector=DETECTOR, timestamps=times, step_seconds=STEP)
    assert evidence.recorded_samples == len(times)
    assert evidence.confirmed_incidents == []
    # One breach: it starts once the 1h (or 6h) ratio catches up with the burst and ends once the
    # short window has forgotten it.
    (breach,) = evidence.breaches
    assert burst.start < breach.start < burst.start + 30 * 60, (breach, burst)
    assert burst.end < breach.end < burst.end + 40 * 60, (breach, burst)
    # One 14.4x page, about a quarter of an hour into the burst (the 1h ratio must pass 7.2%).
    (page,) = evidence.page_times
    assert burst.start + 5 * 60 < page < burst.start + 30 * 60, (page, burst)

    # The derived condition is the alert rule's own, sample for sample, on this real history.
    derived = firing(prometheus, tier_condition_query(SLO, TIERS[0]), times)
    alert_rule = firing(prometheus, fast_alert_expr(history.rule_file), times)
    assert derived.any() and np.array_equal(derived, alert_rule)
    assert onset_times(times, alert_rule) == [page]

    # Why a breach is not `slo:current_burn_rate:ratio > 1`: over the two days, the 5m burn rate
    # of this healthy service (it spends ~2/3 of its budget) crosses 1x dozens of times.
    before = np.arange(history.end - TRAINING_WINDOW, burst.start - HOUR, STEP)
    naive = firing(prometheus, f'max(slo:current_burn_rate:ratio{{slo="{SLO}"}}) > 1', before)
    assert len(onset_times(before, naive)) >= 10


def flapping_history(healthy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The training rows of a service that failed a quarter of its requests for 45 minutes every
    four hours, none of it recorded as an incident: what a model learns as "normal" then."""
    values = healthy.copy()
    period, length = int(4 * HOUR / STEP), int(BURST_SECONDS / STEP)
    for start in range(period // 2, len(values) - length, period):
        burst = slice(start, start + length)
        values[burst] = BURST_MAGNITUDE * rng.lognormal(0.0, 0.1, values[burst].shape)
    return values


def version_record(settings: Settings, version: str) -> dict[str, object]:
    versions = {v["version"]: v for v in registry.list_versions(settings, DETECTOR)}
    return versions[version]


def run_metrics(settings: Settings, run_id: str) -> dict[str, float]:
    return dict(MlflowClient(tracking_uri=settings.mlflow_tracking_uri).get_run(run_id).data.metrics)


def test_retrain_judges_candidates_by_the_real_breach(history: History, settings: Settings) -> None:
    detector = settings.pipeline.detector(DETECTOR)

    # A normally trained candidate: the burst is new to it, it alarms ahead of the page.
    good = retrain_detector(settings, DETECTOR, now=history.end)
    assert good.promoted, good.reasons
    metrics = run_metrics(settings, good.run_id)
    assert metrics["slo_recorded_samples"] > 0
    assert (metrics["slo_breaches"], metrics["slo_pages"]) == (1.0, 1.0)
    assert metrics["slo_candidate_breaches_caught"] == 1.0
    assert metrics["slo_candidate_median_lead_seconds"] > 0
    # It alarmed through the breach for ~an hour on all three routes, yet passed the basic gate
    # (at most 5% firing, 1 onset allowed): the breach's alarms are not false ones there either,
    # although no incident row records the breach.
    assert any("alarms on healthy held-out data, within" in reason for reason in good.reasons)
    assert metrics["candidate_firing_fraction"] < 0.05
    assert any("caught 1/1 episodes (breaches 1/1" in reason for reason in good.reasons), good.reasons

    # A candidate that learned the flapping service's error bursts as normal.
    data = prepare_training_data(settings, detector, end=history.end)
    blind_values = flapping_history(data.block.values[: data.split], np.random.default_rng(3))
    blind_model, blind_report = fit_detector_model(
        blind_values,
        detector,
        series_keys=data.keys,
        rule=anomaly_alert_rule(detector.step_seconds, RuleTiming.from_settings(settings)),
    )
    blind = judge_and_register(
        settings,
        detector,
        data,
        blind_model,
        blind_report,
        registry=MlflowRegistry(settings),
        evidence=PrometheusSloEvidence(settings),
    )

    assert not blind.promoted
    assert blind.metrics["slo_candidate_breaches_caught"] == 0.0
    assert blind.metrics["slo_champion_breaches_caught"] == 1.0
    assert blind.metrics["slo_candidate_pages_missed"] == 1.0
    slo_reasons = [reason for reason in blind.reasons if "caught 0/1 episodes" in reason]
    assert slo_reasons and slo_reasons[0].startswith(f"SLO '{SLO}': "), blind.reasons
    assert "need 100%" in slo_reasons[0]
    assert any("fewer episodes than the champion" in reason for reason in blind.reasons)
    # Rejected on the SLO alone: it raised no alarm the basic gate could hold against it.
    assert any("alarms on healthy held-out data, within" in reason for reason in blind.reasons)
    recorded = version_record(settings, blind.model_version)["tags"]
    assert recorded["slo_pipeline.decision"] == "rejected"
    assert f"SLO '{SLO}': caught 0/1 episodes" in recorded["slo_pipeline.reasons"]
    assert registry.champion_ref(settings, DETECTOR).version == good.model_version

    # A normal candidate measured against that champion on the same breach passes again.
    again = retrain_detector(settings, DETECTOR, now=history.end)
    assert again.promoted, again.reasons
    assert (
        f"SLO '{SLO}': not worse than the champion on recall, healthy alarms and lead time" in again.reasons
    )


def store_slo(database_url: str) -> None:
    specs = parse_specs((REPO_ROOT / "examples" / "slos.yml").read_text(encoding="utf-8"))
    conn = connect(database_url)
    try:
        store.apply_slos(conn, [slo for slo in specs if slo.name == SLO], changed_by="test")
    finally:
        conn.close()


def test_slo_history_keeps_snapshots_breaches_and_feeds_validation_where_prometheus_has_nothing(
    history: History, settings: Settings, prometheus: launch.ManagedProcess
) -> None:
    store_slo(settings.database_url)
    burst = history.burst
    # The page reached the webhook as an incident of this SLO while the burst went on.
    seed_incident(
        settings.database_url,
        detector=None,
        slo=SLO,
        starts_at=burst.start + 900,
        ends_at=burst.end,
        feedback=None,
    )
    ((incident_id,),) = fetch_all(settings.database_url, "SELECT id FROM incidents")

    first = snapshot_pass(settings, now=history.end)
    assert first.failed == [] and first.slos == 1
    rows = fetch_all(
        settings.database_url,
        "SELECT extract(epoch FROM taken_at), recorded, interval_error_ratio, interval_weight, pages,"
        " (peak_burn_rates->>'fast')::float, (burn_rates->>'fast')::float"
        " FROM slo_snapshots WHERE slo_name = %s ORDER BY taken_at",
        (SLO,),
    )
    # One per hour of the 14 days Prometheus' default retention holds; only the last ~50 h have data.
    due = due_instants(
        last_taken=None, now=history.end - SETTLE_SECONDS, interval=HOUR, lookback=14 * 86400, max_count=10**6
    )
    assert len(due) >= 14 * 24
    assert [float(r[0]) for r in rows] == due and first.snapshots_inserted == len(due)
    recorded = [row for row in rows if row[1]]
    assert HISTORY_SECONDS / HOUR - 2 <= len(recorded) <= HISTORY_SECONDS / HOUR + 1

    # The intervals add up to what Prometheus' own 30d ratio says about the whole history.
    weight = sum(float(r[3]) for r in recorded if r[3] is not None)
    errors = sum(float(r[2]) * float(r[3]) for r in recorded if r[2] is not None)
    (sample,) = prometheus_query(
        prometheus, f'max(slo:sli_error:ratio_rate30d{{slo="{SLO}"}})', time=rows[-1][0]
    )
    assert errors / weight == pytest.approx(float(sample["value"][1]), rel=0.02)

    # The burst is one page period, the one validation derives, with the incident linked; one page.
    times = held_out_times(history)
    (live,) = fetch_slo_evidence(
        settings, slo=SLO, detector=DETECTOR, timestamps=times, step_seconds=STEP
    ).breaches
    pages = fetch_all(
        settings.database_url,
        "SELECT extract(epoch FROM starts_at), extract(epoch FROM ends_at), incident_ids FROM slo_breaches"
        " WHERE severity = 'page'",
    )
    assert len(pages) == 1, pages
    start, end, linked = pages[0]
    assert abs(float(start) - live.start) <= STEP and abs(float(end) - live.end) <= 2 * STEP, (pages, live)
    assert linked == [incident_id]
    assert sum(int(r[4]) for r in rows) == 1
    (paged,) = [r for r in rows if r[4]]
    assert float(paged[0]) - HOUR < float(start) <= float(paged[0])
    # The fast tier paged in that interval, so its burn peaked above its 14.4x factor there, while
    # the healthy hours' peaks stay far below it.
    assert paged[5] >= 14.4 and paged[5] >= paged[6]
    assert max(r[5] for r in recorded if r[0] < burst.start - HOUR) < 14.4

    # Re-running the same pass stores nothing twice and leaves the periods as they were.
    before = fetch_all(settings.database_url, "SELECT * FROM slo_breaches ORDER BY id")
    again = snapshot_pass(settings, now=history.end)
    assert again.snapshots_inserted == 0
    assert fetch_all(settings.database_url, "SELECT count(*) FROM slo_snapshots") == [(len(rows),)]
    assert fetch_all(settings.database_url, "SELECT * FROM slo_breaches ORDER BY id") == before

    # Validation over a window reaching a day before Prometheus' first sample: an older breach
    # (stored by an earlier pass, since expired from Prometheus) counts next to the live one.
    tsdb_start = history.end - HISTORY_SECONDS
    expired = (tsdb_start - 10 * HOUR, tsdb_start - 9 * HOUR)
    conn = connect(settings.database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO slo_breaches (slo_name, severity, starts_at, ends_at)"
                " VALUES (%s, 'page', to_timestamp(%s), to_timestamp(%s))",
                (SLO, *expired),
            )
            # Those hours were snapshotted while Prometheus still had them.
            cur.execute(
                "UPDATE slo_snapshots SET recorded = true, interval_error_ratio = 0.001,"
                " interval_weight = 1000 WHERE taken_at BETWEEN to_timestamp(%s) AND to_timestamp(%s)",
                (tsdb_start - 24 * HOUR, tsdb_start - 2 * HOUR),
            )
            assert cur.rowcount >= 21
    finally:
        conn.close()
    wide = np.arange(np.ceil((tsdb_start - 24 * HOUR) / STEP) * STEP, history.end + 1, STEP)
    evidence = fetch_slo_evidence(settings, slo=SLO, detector=DETECTOR, timestamps=wide, step_seconds=STEP)
    assert [(b.start, b.end) for b in evidence.breaches] == [expired, (live.start, live.end)]
    prometheus_only = int(np.count_nonzero(wide >= tsdb_start))
    assert evidence.recorded_samples > prometheus_only
