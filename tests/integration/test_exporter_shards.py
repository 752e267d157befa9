"""Three exporter replicas against one real Prometheus split the work exactly: the union of their
scores equals one unsharded exporter's, no series is scored twice, and each replica queries only
the detectors it owns (so its fetch, cache and scoring are its share, not everything).

Prometheus 2.42 holds a day of a latency gauge for seven services (three routes each), backfilled
with promtool; each detector watches one service. The replicas score at the same instant with
the same models, so their pages must agree line for line with the unsharded exporter's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from exporter.service import ExporterService
from exporter.sharding import UNSHARDED, Shard
from slo_pipeline.adapters.registry import ModelRef
from slo_pipeline.core.model import DetectorModel
from slo_pipeline.core.training import fit_detector_model
from slo_pipeline.devstack import launch
from slo_pipeline.settings import DetectorConfig, FeatureWindows, PipelineConfig, load_settings

pytestmark = pytest.mark.integration

METRIC = "shard_it_latency_seconds"
SERVICES = ("billing", "cart", "checkout", "login", "search", "shipping", "users")
ROUTES = ("a", "b", "c")
STEP = 60
N_STEPS = 1440
END = float((int(time.time()) // 3600 - 1) * 3600)
WINDOWS = FeatureWindows(short=5, medium=30, long=120)
DETECTORS = [
    DetectorConfig(
        name=f"{service}_latency",
        query=f'{METRIC}{{service="{service}"}}',
        step_seconds=STEP,
        windows=WINDOWS,
        n_estimators=30,
    )
    for service in SERVICES
]
SHARDS = 3
# Lines that carry a detector's output; the exporter's own metrics differ per replica by design.
OUTPUT_PREFIXES = (
    "anomaly_score{",
    "anomaly_tail_probability{",
    "anomaly_driver_info{",
    "anomaly_model_info{",
)


def history() -> np.ndarray:
    """[N_STEPS, services, routes]: a daily cycle and noise."""
    rng = np.random.default_rng(5)
    t = np.arange(N_STEPS)[:, None, None]
    base = rng.uniform(0.05, 0.5, size=(1, len(SERVICES), len(ROUTES)))
    noise = rng.normal(0, 0.003, (N_STEPS, *base.shape[1:]))
    values = base * (1 + 0.2 * np.sin(2 * np.pi * t / 1440)) + noise
    return np.round(values, 6)


def write_openmetrics(path: Path) -> None:
    values = history()
    times = (END - STEP * np.arange(N_STEPS - 1, -1, -1)).astype(np.int64).tolist()
    lines = [f"# HELP {METRIC} Synthetic latency.", f"# TYPE {METRIC} gauge"]
    for s, service in enumerate(SERVICES):
        for r, route in enumerate(ROUTES):
            column = values[:, s, r].tolist()
            lines += [
                f'{METRIC}{{service="{service}",route="{route}"}} {v!r} {at}'
                for at, v in zip(times, column, strict=True)
            ]
    lines.append("# EOF")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


class Models:
    def __init__(self, models: dict[str, DetectorModel]) -> None:
        self.models = models

    def champion_ref(self, detector_name: str) -> ModelRef:
        return ModelRef(detector_name, "1", f"run-{detector_name}")

    def load_model(self, ref: ModelRef) -> DetectorModel:
        return self.models[ref.model_name]


def output_lines(service: ExporterService) -> set[str]:
    return {line for line in service.page.body().decode().splitlines() if line.startswith(OUTPUT_PREFIXES)}


def test_three_replicas_split_the_detectors_exactly(
    tmp_path: Path, prometheus_factory: Callable[..., launch.ManagedProcess]
) -> None:
    openmetrics = tmp_path / "history.om"
    write_openmetrics(openmetrics)
    launch.backfill_openmetrics(openmetrics, tmp_path / "tsdb")
    prometheus = prometheus_factory(data_dir=tmp_path / "tsdb")
    settings = load_settings(prometheus_url=prometheus.url, pipeline=PipelineConfig(detectors=DETECTORS))
    values = history()
    models = Models({d.name: fit_detector_model(values[:, s], d)[0] for s, d in enumerate(DETECTORS)})

    def replica(shard: Shard) -> ExporterService:
        service = ExporterService(settings, model_source=models, wall_clock=lambda: END, shard=shard)
        report = service.run_cycle()
        assert report.all_up, report.errors
        return service

    whole = replica(UNSHARDED)
    replicas = [replica(Shard(index, SHARDS)) for index in range(SHARDS)]

    expected = output_lines(whole)
    scores = [line for line in expected if line.startswith("anomaly_score{")]
    assert len(scores) == len(SERVICES) * len(ROUTES), expected
    outputs = [output_lines(service) for service in replicas]
    for i in range(SHARDS):
        assert outputs[i], f"shard {i} scored nothing"
        for j in range(i + 1, SHARDS):
            assert not outputs[i] & outputs[j], f"shards {i} and {j} overlap"
    assert set().union(*outputs) == expected

    # Each replica asked Prometheus for its own detectors only.
    for service in replicas:
        source = service._series_source
        owned = {d.name for d in service.detectors}
        for detector in DETECTORS:
            fetched = source.last_fetch(detector.name) is not None  # type: ignore[attr-defined]
            assert fetched == (detector.name in owned), (service.shard, detector.name)
    assert sorted(len(s.detectors) for s in replicas) == [2, 2, 3]
