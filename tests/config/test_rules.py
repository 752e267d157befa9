"""promtool check/test on rules/, and write_rules' time compression."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from slo_pipeline.core.durations import parse_duration_ms
from slo_pipeline.devstack import launch
from tests.config.promtools import RULE_FILES, RULE_TEST_FILES, RULES_DIR, assert_ok, run_tool


def test_every_rule_file_passes_promtool_check() -> None:
    assert RULE_FILES
    assert_ok(run_tool("promtool", "check", "rules", *RULE_FILES), "promtool check rules")


def test_every_rule_file_has_a_unit_test_file() -> None:
    tested = set()
    for test_file in RULE_TEST_FILES:
        document = yaml.safe_load(test_file.read_text())
        tested |= {(test_file.parent / name).resolve() for name in document["rule_files"]}
    untested = [path.name for path in RULE_FILES if path.resolve() not in tested]
    assert not untested, f"rule files without a rules/tests/*.yml: {untested}"


@pytest.mark.parametrize("test_file", RULE_TEST_FILES, ids=lambda path: path.name)
def test_promtool_rule_unit_tests_pass(test_file: Path) -> None:
    assert_ok(run_tool("promtool", "test", "rules", test_file), f"promtool test rules {test_file.name}")


# Each mutation breaks one promise of anomaly.rules.yml; the unit tests must notice every one.
MUTATIONS = {
    "threshold_inclusive": ('expr: anomaly_score{slo=""} > 1\n', 'expr: anomaly_score{slo=""} >= 1\n'),
    "slo_detectors_not_excluded": ('expr: anomaly_score{slo=""} > 1\n', "expr: anomaly_score > 1\n"),
    "shorter_for": ("for: 2m # TUNE: detection delay", "for: 1m # TUNE: detection delay"),
    "no_keep_firing": ("keep_firing_for: 15m # TUNE: gap", "keep_firing_for: 1m # TUNE: gap"),
    "retrain_label_lost": ('retrain: "true"', 'retrain: "false"'),
    "retrain_too_eager": ("ratio_avg1h > 0.2", "ratio_avg1h > 0.05"),
    "exporter_down_any_job": ('up{job="slo-pipeline-exporter"} == 0', "up == 0"),
    "shard_missing_never_per_shard": ("unless on (shard)", "unless on ()"),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_anomaly_rule_tests_catch_a_broken_rule(tmp_path: Path, mutation: str) -> None:
    old, new = MUTATIONS[mutation]
    source = (RULES_DIR / "anomaly.rules.yml").read_text()
    assert source.count(old) == 1, f"mutation {mutation!r} no longer matches the rule file"
    (tmp_path / "anomaly.rules.yml").write_text(source.replace(old, new))
    (tmp_path / "tests").mkdir()
    shutil.copy(RULES_DIR / "tests" / "anomaly.rules.test.yml", tmp_path / "tests")

    completed = run_tool("promtool", "test", "rules", tmp_path / "tests" / "anomaly.rules.test.yml")

    assert completed.returncode != 0, f"the rule tests did not notice mutation {mutation!r}"
    assert "FAILED" in completed.stdout + completed.stderr


def test_time_scaled_rules_pass_promtool_and_compress_every_duration(tmp_path: Path) -> None:
    written = launch.write_rules(tmp_path, time_scale=1 / 60)

    assert [path.relative_to(tmp_path) for path in written] == [
        path.relative_to(RULES_DIR) for path in RULE_FILES
    ]
    assert_ok(run_tool("promtool", "check", "rules", *written), "promtool check rules (scaled)")
    rules = {
        rule.get("alert") or rule["record"]: rule
        for group in yaml.safe_load((tmp_path / "anomaly.rules.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    assert rules["AnomalyDetected"]["for"] == "2s"
    assert rules["AnomalyDetected"]["keep_firing_for"] == "15s"
    assert rules["AnomalyDetectorNeedsRetraining"]["for"] == "15s"
    assert rules["detector:anomalous_series:ratio_avg1h"]["expr"].strip() == (
        "avg_over_time(detector:anomalous_series:ratio[1m])"
    )
    # Thresholds and the 600 s staleness literal are numbers, not durations: untouched.
    assert "> 600" in rules["AnomalyExporterStale"]["expr"]
    for source, path in zip(RULE_FILES, written, strict=True):
        original_ranges = _range_durations_ms(source)
        assert _range_durations_ms(path) == [max(1, round(ms / 60)) for ms in original_ranges], path.name


def _range_durations_ms(rule_file: Path) -> list[int]:
    """Every `[range]` duration in the file's expressions, in order, in milliseconds."""
    durations = []
    for group in yaml.safe_load(rule_file.read_text())["groups"]:
        for rule in group["rules"]:
            for match in re.finditer(r"\[(\w+)[\]:]", str(rule["expr"])):
                durations.append(parse_duration_ms(match.group(1)))
    return durations


def test_unscaled_rules_are_byte_identical_copies(tmp_path: Path) -> None:
    for path in launch.write_rules(tmp_path):
        assert path.read_bytes() == (RULES_DIR / path.relative_to(tmp_path)).read_bytes()


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("rate(x[5m])", "rate(x[5s])"),
        ("rate(x[1h30m]) offset 1h", "rate(x[90s]) offset 1m"),
        ("max_over_time(rate(x[5m])[1h:1m])", "max_over_time(rate(x[5s])[1m:1s])"),
        ("max_over_time(x[30d:])", "max_over_time(x[12h:])"),
        ('x > 300 and y{route="/api/5m"}', 'x > 300 and y{route="/api/5m"}'),
        ("rate(x[1s])", "rate(x[17ms])"),
    ],
)
def test_scale_promql_durations(expr: str, expected: str) -> None:
    assert launch.scale_promql_durations(expr, 1 / 60) == expected


def test_write_rules_rejects_non_positive_scale(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="time_scale must be > 0"):
        launch.write_rules(tmp_path, time_scale=0)
