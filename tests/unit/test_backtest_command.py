"""`slo-pipeline backtest` end to end on small synthetic CSV files with NAB-style labels."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from slo_pipeline.adapters.series_files import SeriesFile
from slo_pipeline.cli import main
from slo_pipeline.offline.backtest.cli_run import _base_detector, _detector_for
from slo_pipeline.offline.backtest.commands import register
from slo_pipeline.offline.backtest.defaults import CSV_DEFAULT_BUDGET, CSV_DEFAULT_MIN_TRAINING_SAMPLES
from slo_pipeline.settings import DetectorConfig


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


def test_csv_with_rfc3339_times_is_read_as_utc(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    data, _ = corpus
    frame = pd.read_csv(data / "a.csv")
    # The same instants written with offsets, as a Prometheus export would be.
    frame["timestamp"] = (
        pd.to_datetime(frame["timestamp"]).dt.tz_localize("UTC").dt.tz_convert("Europe/Berlin")
    )
    frame["timestamp"] = frame["timestamp"].map(lambda t: t.isoformat())
    frame.to_csv(tmp_path / "offsets.csv", index=False)
    out_plain, out_offsets = tmp_path / "plain.csv", tmp_path / "offsets.scored.csv"
    assert main(["backtest", "--input", str(data / "a.csv"), "--output", str(out_plain), *BASE_ARGS]) == 0
    assert (
        main(["backtest", "--input", str(tmp_path / "offsets.csv"), "--output", str(out_offsets), *BASE_ARGS])
        == 0
    )
    pd.testing.assert_frame_equal(pd.read_csv(out_plain), pd.read_csv(out_offsets))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prometheus-url", "http://127.0.0.1:9", "--query", "up"], "needs --start"),
        (["--prometheus-url", "http://127.0.0.1:9", "--start", "now-1h"], "--query or --detector"),
        (["--prometheus-url", "http://127.0.0.1:9", "--query", "up", "--start", "last week"], "not a time"),
        (
            ["--prometheus-url", "http://127.0.0.1:9", "--query", "up", "--start", "now", "--end", "now-1d"],
            "empty",
        ),
        (["--prometheus-url", "http://127.0.0.1:9", "--input", "x.csv", "--query", "up"], "not both"),
    ],
)
def test_prometheus_mode_argument_errors_are_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backtest", *args, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_label_windows_with_offsets_match_naive_utc_rows(
    corpus: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, labels = corpus
    windows = json.loads(labels.read_text())
    with_offsets = {
        key: [[f"{pd.Timestamp(t).isoformat()}Z" for t in w] for w in ws] for key, ws in windows.items()
    }
    offsets = tmp_path / "windows-z.json"
    offsets.write_text(json.dumps(with_offsets))
    tables = []
    for path in (labels, offsets):
        assert main(["backtest", "--input", str(data), "--labels", str(path), *BASE_ARGS]) == 0
        tables.append(capsys.readouterr().out)
    assert tables[0] == tables[1]
    assert "TOTAL" in tables[1]


def test_multivariate_csv_scores_its_columns_together_and_names_the_driver(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    times = pd.date_range("2024-01-01", periods=1400, freq="5min")
    cpu = 50 + rng.normal(0, 1, size=1400)
    errors = 2 + rng.normal(0, 0.1, size=1400)
    errors[900:930] += 3  # only the error signal moves
    source = tmp_path / "service.csv"
    frame = pd.DataFrame({"timestamp": times.strftime("%Y-%m-%d %H:%M:%S"), "CPU %": cpu, "Errors": errors})
    frame.to_csv(source, index=False)
    out = tmp_path / "scored.csv"
    args = ["backtest", "--input", str(source), "--multivariate", "--output", str(out), *BASE_ARGS]
    assert main(args) == 0
    scored = pd.read_csv(out, keep_default_na=False, na_values=[""])
    # The input columns as they were, then one set of results for the one service.
    assert list(scored.columns) == [
        "timestamp",
        "CPU %",
        "Errors",
        "anomaly_score",
        "anomaly_tail_probability",
        "alarm",
        "firing",
        "scored",
        "driver",
        "reason",
    ]
    np.testing.assert_allclose(scored["Errors"], errors, rtol=1e-5)
    alarms = np.flatnonzero(scored["alarm"].to_numpy())
    assert any(900 <= a < 930 for a in alarms), alarms
    anomalous = scored.iloc[900:930]
    drivers = set(anomalous.loc[anomalous["anomaly_score"] >= 1, "driver"])
    assert drivers and all(name.startswith("errors:") for name in drivers), drivers
    assert scored.loc[scored["anomaly_score"] < 1, "driver"].isna().all()  # an empty cell


def test_multivariate_needs_two_columns(
    corpus: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data, _ = corpus
    assert main(["backtest", "--input", str(data / "a.csv"), "--multivariate", "--quiet"]) == 2
    assert "--multivariate needs at least two value columns" in capsys.readouterr().err


def test_multivariate_columns_must_match_a_configured_detectors_signals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "pipeline.yml"
    config.write_text(
        "detectors:\n  - name: svc\n    signals:\n"
        "      - {name: cpu, query: cpu}\n      - {name: errors, query: errors}\n",
        encoding="utf-8",
    )
    times = pd.date_range("2024-01-01", periods=300, freq="5min").strftime("%Y-%m-%d %H:%M:%S")
    source = tmp_path / "svc.csv"
    pd.DataFrame({"timestamp": times, "errors": 1.0, "cpu": 2.0}).to_csv(source, index=False)
    args = [
        "backtest",
        "--input",
        str(source),
        "--multivariate",
        "--config",
        str(config),
        "--detector",
        "svc",
    ]
    assert main([*args, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "its columns give signals ['errors', 'cpu'], but detector 'svc' scores ['cpu', 'errors']" in err
    assert "Traceback" not in err
    assert main(["backtest", "--prometheus-url", "http://127.0.0.1:1", "--multivariate", "--quiet"]) == 2
    assert "--multivariate is for CSV files" in capsys.readouterr().err


def _parsed(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["backtest", *argv])


def test_training_minimum_is_the_detectors_own_unless_given(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yml"
    config.write_text("detectors:\n  - {name: svc, query: up, min_training_samples: 321}\n", encoding="utf-8")
    configured = ["--prometheus-url", "http://127.0.0.1:1", "--config", str(config), "--detector", "svc"]

    assert _base_detector(_parsed(*configured)).min_training_samples == 321
    assert _base_detector(_parsed(*configured, "--min-training-samples", "50")).min_training_samples == 50
    # Files start cold: NAB's shortest file could not train with the production minimum.
    csv = _base_detector(_parsed("--input", "x.csv"))
    assert csv.min_training_samples == CSV_DEFAULT_MIN_TRAINING_SAMPLES
    assert csv.false_alarms_per_week == CSV_DEFAULT_BUDGET
    raw_query = _base_detector(_parsed("--prometheus-url", "http://127.0.0.1:1", "--query", "up"))
    assert raw_query.min_training_samples == DetectorConfig(name="x", query="up").min_training_samples


def _series_at(step: str) -> SeriesFile:
    times = pd.date_range("2024-01-01", periods=50, freq=step)
    return SeriesFile(path=Path("x.csv"), timestamps=times, columns=["value"], values=np.zeros((50, 1)))


def test_csv_shift_features_are_gated_on_the_medium_windows_duration(tmp_path: Path) -> None:
    # Windows count samples: at 1 hour the medium window (30) spans 30 h, a daily cycle, not a shift.
    def shift(*argv: str, step: str) -> bool:
        args = _parsed(*argv)
        return _detector_for(_base_detector(args), args, _series_at(step)).windows.shift

    assert shift("--input", "x.csv", step="1min")
    assert shift("--input", "x.csv", step="5min")  # NAB's step: 2.5 h, kept
    assert not shift("--input", "x.csv", step="15min")
    assert not shift("--input", "x.csv", step="1h")
    # The gate follows the medium window actually used, and an explicit choice wins either way.
    assert shift("--input", "x.csv", "--windows", "3,6,180", step="15min")
    assert shift("--input", "x.csv", "--shift-features", step="1h")
    assert not shift("--input", "x.csv", "--no-shift-features", step="1min")
    config = tmp_path / "pipeline.yml"
    config.write_text(
        "detectors:\n  - {name: svc, query: up, windows: {shift: true}}\n  - {name: plain, query: up}\n",
        encoding="utf-8",
    )
    assert shift("--input", "x.csv", "--config", str(config), "--detector", "svc", step="1h")
    assert not shift("--input", "x.csv", "--config", str(config), "--detector", "plain", step="1min")
