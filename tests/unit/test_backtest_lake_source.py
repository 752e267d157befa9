"""`backtest --detector --source lake|auto`: replays from the data lake, and Prometheus' samples
win over the lake's where both exist (the combination itself is pure and tested here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from slo_pipeline.adapters import lake
from slo_pipeline.adapters.lake_rows import block_rows
from slo_pipeline.adapters.prometheus import SeriesBlock
from slo_pipeline.cli import main
from slo_pipeline.offline.backtest.lake_source import prefer_primary

START = 1_700_006_400.0  # a whole UTC day
STEPS = 1500
PIPELINE = {
    "detectors": [{"name": "latency", "query": "up", "windows": {"short": 3, "medium": 10, "long": 40}}]
}


def synthetic(labels: list[dict[str, str]], seed: int) -> SeriesBlock:
    rng = np.random.default_rng(seed)
    values = 50 + rng.normal(0, 1, (STEPS, len(labels)))
    values[1200:1230, 0] += 25
    return SeriesBlock(labels=labels, timestamps=START + 60.0 * np.arange(STEPS), values=values)


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "pipeline.yml"
    config.write_text(yaml.safe_dump(PIPELINE), encoding="utf-8")
    monkeypatch.setenv("SLO_PIPELINE_CONFIG", str(config))
    monkeypatch.setenv("SLO_PIPELINE_DATA_LAKE", str(tmp_path / "lake"))
    return tmp_path


def test_a_backtest_replays_the_lake_without_prometheus(configured: Path) -> None:
    block = synthetic([{"route": "/a"}, {"route": "/b"}], seed=1)
    lake.merge_rows(str(configured / "lake"), "latency", block_rows("latency", block))
    output = configured / "scored.csv"
    args = ["backtest", "--detector", "latency", "--source", "lake", "--n-estimators", "30", "--quiet"]
    end = START + 60 * (STEPS - 1)
    code = main([*args, "--start", str(START), "--end", str(end), "--output", str(output)])
    assert code == 0
    scored = pd.read_csv(output)
    assert len(scored) == 2 * STEPS
    a_rows = scored[scored["route"] == "/a"]
    np.testing.assert_array_equal(a_rows["value"].to_numpy(), block.values[:, 0])
    assert a_rows["timestamp"].iloc[0] == "2023-11-15T00:00:00Z"
    # The injected shift at row 1200 of /a raises an alarm there.
    assert a_rows["alarm"].iloc[1200:1240].any()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "lake", "--start", "now-1d"], "needs --detector"),
        (["--source", "lake", "--detector", "latency"], "needs --start"),
        (
            ["--source", "lake", "--detector", "latency", "--start", "now-1d", "--query", "up"],
            "--query needs Prometheus",
        ),
        (["--source", "auto", "--detector", "latency", "--start", "now-1d"], "needs --prometheus-url"),
        (
            [
                "--source",
                "lake",
                "--detector",
                "latency",
                "--start",
                "now-1d",
                "--prometheus-url",
                "http://x",
            ],
            "drop --prometheus-url",
        ),
        (["--source", "lake", "--detector", "latency", "--start", "now-1d"], "no lake table"),
    ],
)
def test_bad_lake_backtests_are_one_line_and_exit_2(
    configured: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["backtest", *args, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_an_empty_lake_range_is_refused_with_the_range_named(
    configured: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    block = synthetic([{"route": "/a"}], seed=2)
    lake.merge_rows(str(configured / "lake"), "latency", block_rows("latency", block))
    code = main(
        ["backtest", "--detector", "latency", "--source", "lake", "--start", "0", "--end", "600", "--quiet"]
    )
    assert code == 2
    assert "holds no samples of detector 'latency' between 1970-01-01T00:00:00Z" in capsys.readouterr().err


def test_prometheus_values_win_and_the_lake_fills_the_rest() -> None:
    grid = np.array([0.0, 60.0, 120.0])
    primary = SeriesBlock(
        labels=[{"route": "/b"}], timestamps=grid, values=np.array([[np.nan], [2.0], [3.0]])
    )
    fallback = SeriesBlock(
        labels=[{"route": "/a"}, {"route": "/b"}],
        timestamps=grid,
        values=np.array([[10.0, 11.0], [20.0, 21.0], [np.nan, np.nan]]),
    )
    combined = prefer_primary(primary, fallback)
    assert combined.labels == [{"route": "/a"}, {"route": "/b"}]
    np.testing.assert_array_equal(combined.values, [[10.0, 11.0], [20.0, 2.0], [np.nan, 3.0]])
    with pytest.raises(ValueError, match="different time grids"):
        prefer_primary(primary, SeriesBlock(labels=[], timestamps=grid[:2], values=np.empty((2, 0))))
