"""`slo-pipeline backtest` end to end on small synthetic CSV files with NAB-style labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from slo_pipeline.cli import main


def _write_series(path: Path, anomaly_at: int | None, rows: int = 1400, seed: int = 0) -> pd.DatetimeIndex:
    rng = np.random.default_rng(seed)
    times = pd.date_range("2024-01-01", periods=rows, freq="5min")
    values = 50 + rng.normal(0, 1, size=rows)
    if anomaly_at is not None:
        values[anomaly_at : anomaly_at + 30] += 25
    frame = pd.DataFrame({"timestamp": times.strftime("%Y-%m-%d %H:%M:%S"), "value": values})
    frame.to_csv(path, index=False)
    return times


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data" / "synthetic"
    data.mkdir(parents=True)
    labels = {}
    for name, anomaly in (("a.csv", 900), ("b.csv", 1100)):
        times = _write_series(data / name, anomaly, seed=len(name) + anomaly)
        labels[f"synthetic/{name}"] = [
            [str(times[anomaly - 20]), str(times[anomaly + 40])],
        ]
    labels_path = tmp_path / "windows.json"
    labels_path.write_text(json.dumps(labels))
    return data, labels_path


BASE_ARGS = ["--windows", "3,10,40", "--n-estimators", "30", "--quiet"]


def test_single_file_writes_scored_rows(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    data, _ = corpus
    out = tmp_path / "out.csv"
    assert main(["backtest", "--input", str(data / "a.csv"), "--output", str(out), *BASE_ARGS]) == 0
    scored = pd.read_csv(out)
    original = pd.read_csv(data / "a.csv")
    assert list(scored.columns[:2]) == ["timestamp", "value"]
    assert {"anomaly_score", "anomaly_tail_probability", "alarm"} <= set(scored.columns)
    assert len(scored) == len(original)
    assert scored["anomaly_tail_probability"].between(0, 1).all()
    # Nothing before the first model (15 % of 1400 rows = 210) is scored.
    assert (scored["scored"][:210] == 0).all() and scored["scored"][300:].all()
    # The injected anomaly raises exactly one alarm, inside it.
    alarms = np.flatnonzero(scored["alarm"].to_numpy())
    assert any(900 <= a < 930 for a in alarms)
    assert sum(900 <= a < 960 for a in alarms) == 1


def test_folder_with_labels_prints_per_file_and_total_table(
    corpus: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, labels = corpus
    out_dir = tmp_path / "scored"
    args = ["--input", str(data), "--labels", str(labels), "--output", str(out_dir)]
    code = main(["backtest", *args, *BASE_ARGS])
    assert code == 0
    table = capsys.readouterr().out
    lines = [line for line in table.splitlines() if line.startswith(("a.csv", "b.csv", "TOTAL"))]
    assert [line.split()[0] for line in lines] == ["a.csv", "b.csv", "TOTAL"]
    total = lines[-1].split()
    assert total[1:3] == ["2", "2"]  # two windows, both hit
    assert float(total[-1]) > 50  # NAB standard score
    assert sorted(p.name for p in out_dir.iterdir()) == ["a.scored.csv", "b.scored.csv"]


def test_bad_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backtest", "--input", str(tmp_path / "missing.csv"), "--quiet"]) == 2
    assert "no such file" in capsys.readouterr().err
