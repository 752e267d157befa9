"""`slo-pipeline lake` on a local lake: bad input is one line and exit 2; export; DuckDB reads it.

No Prometheus here: these commands either fail before asking it or read the lake only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from slo_pipeline import cli
from slo_pipeline.adapters import lake
from slo_pipeline.adapters.lake_rows import block_rows
from slo_pipeline.adapters.prometheus import SeriesBlock

PIPELINE = {
    "detectors": [
        {"name": "latency", "query": "up"},
        {"name": "health", "signals": [{"name": "rate", "query": "a"}, {"name": "errors", "query": "b"}]},
    ]
}
START = 1_700_000_000.0  # a multiple of 60


@pytest.fixture
def run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    config = tmp_path / "pipeline.yml"
    config.write_text(yaml.safe_dump(PIPELINE), encoding="utf-8")
    monkeypatch.setenv("SLO_PIPELINE_CONFIG", str(config))
    monkeypatch.setenv("SLO_PIPELINE_DATA_LAKE", str(tmp_path / "lake"))
    # Nothing listens there: a command that reached Prometheus would fail with exit 1.
    monkeypatch.setenv("PROMETHEUS_URL", "http://127.0.0.1:9")

    def invoke(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sync", "--detector", "nope", "--start", "now-1h"], "no detector named 'nope'"),
        (["sync", "--detector", "latency", "--start", "yesterday"], "not a time: 'yesterday'"),
        (["sync", "--detector", "latency", "--start", "now", "--end", "now-1h"], "is not before --end"),
        (["sync", "--start", "now-1h"], "needs --detector"),
        (["sync", "--detector", "latency"], "go with --start"),
        (
            ["export", "--detector", "latency", "--start", "now-1d", "--end", "now-2d", "--output", "x.csv"],
            "not before",
        ),
        (["export", "--detector", "nope", "--start", "now-1d", "--output", "x.csv"], "no detector named"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    run: Callable[..., tuple[int, str, str]], args: list[str], message: str
) -> None:
    code, out, err = run("lake", *args)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and out == ""


def test_export_before_any_sync_says_so(run: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    code, _, err = run(
        "lake", "export", "--detector", "latency", "--start", "now-1d", "--output", str(tmp_path / "x.csv")
    )
    assert code == 2
    assert "no lake table" in err and "lake sync" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.csv").exists()


def write_health(lake_root: str) -> np.ndarray:
    values = np.arange(3 * 2 * 2, dtype=float).reshape(3, 2, 2) / 3
    values[1, 0, 1] = np.nan
    block = SeriesBlock(
        labels=[{"route": "/b"}, {"route": "/a"}],
        timestamps=START + 60.0 * np.arange(3),
        values=values,
        signals=("rate", "errors"),
    )
    lake.merge_rows(lake_root, "health", block_rows("health", block))
    return values


def test_export_writes_one_row_per_series_signal_and_step_with_the_signal_column(
    run: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    values = write_health(str(tmp_path / "lake"))
    output = tmp_path / "out" / "health.csv"
    code, _, err = run(
        "lake",
        "export",
        "--detector",
        "health",
        "--start",
        str(START),
        "--end",
        str(START + 120),
        "--output",
        str(output),
    )
    assert code == 0, err
    frame = pd.read_csv(output)
    assert list(frame.columns) == ["timestamp", "series", "signal", "value"]
    assert len(frame) == 11  # 12 cells, one without a sample
    assert frame["series"].iloc[0] == '{"route": "/a"}'  # sorted by series, then signal, then time
    assert frame["timestamp"].iloc[0] == "2023-11-14T22:13:20Z"
    b_errors = frame[(frame["series"] == '{"route": "/b"}') & (frame["signal"] == "errors")]
    assert b_errors["value"].tolist() == [values[0, 0, 1], values[2, 0, 1]]
    # A narrower range exports only its steps.
    code, _, err = run(
        "lake",
        "export",
        "--detector",
        "health",
        "--start",
        str(START + 30),
        "--end",
        str(START + 90),
        "--output",
        str(output),
    )
    assert code == 0, err
    assert len(pd.read_csv(output)) == 3


def test_duckdb_reads_the_lake_with_delta_scan(tmp_path: Path) -> None:
    import duckdb
    import duckdb_ext

    values = write_health(str(tmp_path / "lake"))
    connection = duckdb.connect()
    # The delta extension comes from its wheel here (no network); elsewhere `INSTALL delta` does.
    connection.execute(f"SET extension_directory = '{next(iter(duckdb_ext.__path__))}/extensions'")
    count, total = connection.execute(
        f"SELECT count(*), sum(value) FROM delta_scan('{lake.table_uri(str(tmp_path / 'lake'))}') "
        "WHERE detector = 'health' AND signal = 'rate'"
    ).fetchone()
    assert count == 6
    assert total == pytest.approx(np.nansum(values[:, :, 0]))
