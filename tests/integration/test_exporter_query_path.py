"""`fetch_range` against a real Prometheus 2.42 holding a backfilled history we wrote ourselves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from slo_pipeline.adapters.prometheus import (
    TRANSPORTS,
    PrometheusQueryError,
    fetch_detector_range,
    fetch_range,
)
from slo_pipeline.devstack import launch
from slo_pipeline.settings import DetectorConfig, SignalConfig

pytestmark = pytest.mark.integration

METRIC = "query_path_test_value"
STEP = 60
N_POINTS = 240  # four hours at one sample per minute
END = 1_700_006_400  # a multiple of the step, so every sample sits on the query grid
GAP_SERIES, GAP_ROWS = 2, range(100, 110)


def history() -> np.ndarray:
    """[N_POINTS, 3] values: a ramp, a wave with a 10-sample gap, and a constant with -Inf/NaN."""
    t = np.arange(N_POINTS, dtype=np.float64)
    values = np.stack([t * 0.5, np.round(np.sin(t / 10), 6), np.full(N_POINTS, 7.25)], axis=1)
    values[GAP_ROWS, GAP_SERIES - 1] = np.nan  # NaN here means "no sample written"
    values[5, 2] = -np.inf
    return values


def sample_times() -> np.ndarray:
    return END - STEP * np.arange(N_POINTS - 1, -1, -1)


def write_openmetrics(path: Path, values: np.ndarray) -> None:
    lines = [f"# HELP {METRIC} Values for the query path test.", f"# TYPE {METRIC} gauge"]
    for column, shard in enumerate(["ramp", "wave", "flat"]):
        for time_s, value in zip(sample_times().tolist(), values[:, column].tolist(), strict=True):
            if np.isnan(value):
                continue
            text = "-Inf" if value == -np.inf else repr(value)
            lines.append(f'{METRIC}{{shard="{shard}",note="quote \\" and \\\\ backslash"}} {text} {time_s}')
    lines.append("# EOF")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[launch.ManagedProcess]:
    folder = tmp_path_factory.mktemp("query-path")
    openmetrics = folder / "history.om"
    write_openmetrics(openmetrics, history())
    launch.backfill_openmetrics(openmetrics, folder / "data")
    config = launch.write_prometheus_config(
        folder / "prometheus.yml", scrape_targets={}, alertmanager_url=None, rule_files=[]
    )
    process = launch.start_prometheus(config_file=config, data_dir=folder / "data")
    try:
        yield process
    finally:
        process.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_backfilled_history_comes_back_aligned_on_the_grid(
    prometheus: launch.ManagedProcess, transport: str
) -> None:
    block = fetch_range(
        prometheus.url,
        f'{METRIC}{{note!=""}}',
        start=END - STEP * (N_POINTS - 1),
        end=END,
        step_seconds=STEP,
        transport=transport,  # type: ignore[arg-type]
    )
    np.testing.assert_array_equal(block.timestamps, sample_times())
    order = [[labels["shard"] for labels in block.labels].index(shard) for shard in ("ramp", "wave", "flat")]
    assert all(labels["note"] == 'quote " and \\ backslash' for labels in block.labels)
    assert all(labels["__name__"] == METRIC for labels in block.labels)
    expected = history()
    # Prometheus' 5-minute lookback fills a gap with the last sample before it: that, not NaN,
    # is what any client sees, and the features bridge short gaps the same way.
    filled = expected.copy()
    filled[GAP_ROWS, GAP_SERIES - 1] = expected[GAP_ROWS.start - 1, GAP_SERIES - 1]
    filled[list(GAP_ROWS)[5:], GAP_SERIES - 1] = np.nan  # beyond the lookback: no value
    np.testing.assert_array_equal(block.values[:, order], filled)


def test_both_transports_return_identical_blocks(prometheus: launch.ManagedProcess) -> None:
    blocks = [
        fetch_range(
            prometheus.url,
            METRIC,
            start=END - 3 * 3600,
            end=END + 600,
            step_seconds=STEP,
            transport=transport,
        )
        for transport in TRANSPORTS
    ]
    assert blocks[0].labels == blocks[1].labels
    np.testing.assert_array_equal(blocks[0].timestamps, blocks[1].timestamps)
    np.testing.assert_array_equal(blocks[0].values, blocks[1].values)
    # The grid runs past the last sample; those instants are NaN once the lookback is exhausted.
    assert np.isnan(blocks[0].values[-1]).all()


def test_a_range_longer_than_prometheus_allows_is_fetched_in_chunks(
    prometheus: launch.ManagedProcess,
) -> None:
    # 4 hours at a 1 s step is 14,400 points per series: Prometheus refuses more than 11,000.
    start = END - STEP * (N_POINTS - 1)
    block = fetch_range(prometheus.url, f'{METRIC}{{shard="ramp"}}', start=start, end=END, step_seconds=1)
    assert block.values.shape == (END - start + 1, 1)
    on_minutes = block.values[::STEP, 0]
    np.testing.assert_array_equal(on_minutes, history()[:, 0])
    # Between samples the lookback repeats the last value: the chunk seams must not shift that.
    seam = 10_000
    assert block.values[seam, 0] == history()[seam // STEP, 0]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_rejected_query_names_query_url_and_prometheus_reason(
    prometheus: launch.ManagedProcess, transport: str
) -> None:
    broken = f"sum(rate({METRIC}[5m])"
    with pytest.raises(PrometheusQueryError) as raised:
        fetch_range(prometheus.url, broken, start=END - 600, end=END, step_seconds=STEP, transport=transport)  # type: ignore[arg-type]
    message = str(raised.value)
    assert broken in message and prometheus.url in message
    assert "parse error" in message


def test_an_empty_answer_is_an_empty_block(prometheus: launch.ManagedProcess) -> None:
    block = fetch_range(prometheus.url, "no_such_metric", start=END - 600, end=END, step_seconds=STEP)
    assert block.n_series == 0 and block.values.shape == (11, 0)


def test_a_multivariate_detector_joins_its_signals_by_label_set(prometheus: launch.ManagedProcess) -> None:
    """Two signals over the same backfilled metric: `ramp` and `wave` shards as one signal,
    `ramp` scaled as another (with a different `__name__` after arithmetic), joined per shard."""
    detector = DetectorConfig(
        name="joined",
        step_seconds=STEP,
        signals=[
            SignalConfig(name="raw", query=f'{METRIC}{{shard=~"ramp|wave"}}'),
            SignalConfig(name="doubled", query=f'2 * {METRIC}{{shard="ramp"}}'),
        ],
    )
    block = fetch_detector_range(prometheus.url, detector, start=END - STEP * 9, end=END, timeout=10)
    assert block.signals == ("raw", "doubled")
    shards = [labels["shard"] for labels in block.labels]
    assert sorted(shards) == ["ramp", "wave"] and all("__name__" not in labels for labels in block.labels)
    ramp, wave = shards.index("ramp"), shards.index("wave")
    expected_ramp = history()[-10:, 0]
    np.testing.assert_array_equal(block.values[:, ramp, 0], expected_ramp)
    np.testing.assert_array_equal(block.values[:, ramp, 1], 2 * expected_ramp)
    np.testing.assert_array_equal(block.values[:, wave, 0], history()[-10:, 1])
    assert np.isnan(block.values[:, wave, 1]).all()  # the wave has no `doubled` signal


def test_a_rejected_signal_query_names_itself(prometheus: launch.ManagedProcess) -> None:
    detector = DetectorConfig(
        name="joined",
        step_seconds=STEP,
        signals=[SignalConfig(name="ok", query=METRIC), SignalConfig(name="broken", query="rate(")],
    )
    with pytest.raises(PrometheusQueryError, match=r"rate\("):
        fetch_detector_range(prometheus.url, detector, start=END - 600, end=END, timeout=10)
