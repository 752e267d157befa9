"""Rendering of the anomaly exposition: golden page, escaping, label clashes, NaN, duplicates, drivers."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from exporter.exposition import (
    ModelInfo,
    assemble_page,
    escape_label_value,
    explained_series,
    exposed_label_name,
    render_detector,
)
from slo_pipeline.core.calibration import anomaly_score
from slo_pipeline.settings import DetectorConfig

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "exposition_basic.prom"

LATENCY = DetectorConfig(name="api_latency", query="q", step_seconds=60, slo="api_availability")
ERRORS = DetectorConfig(name="api_errors", query="q", step_seconds=60, false_alarms_per_week=2)


def golden_page() -> str:
    """A page exercising every rule at once; its expected text lives in tests/golden/."""
    latency = render_detector(
        LATENCY,
        [
            {"__name__": "http_latency_seconds", "route": "/users", "method": "GET"},
            {"__name__": "http_latency_seconds", "route": '/search?q="x"', "method": "GET"},
            {"route": "/nan", "method": "GET"},  # unscorable: must not appear
            {"route": "C:\\temp\nnext", "detector": "upstream", "slo": "other"},
        ],
        np.array([0.5, 1e-6, np.nan, 1.0]),
        # Only the anomalous /search series (score ~1.5) gets a driver line; /users scores ~0.08.
        drivers={0: "step_change", 1: 'errors:level_vs_long "quoted"', 2: "level_vs_long"},
    )
    errors = render_detector(ERRORS, [{"route": "/users"}], np.array([0.01]))
    models = [
        ModelInfo("api_latency", "api_latency", "3", "0123abcd"),
        ModelInfo("api_errors", "api_errors", "1", "ffff0000"),
    ]
    return assemble_page([latency, errors], models)


def parse_samples(text: str) -> dict[str, float]:
    """`metric{labels}` -> value, for the sample lines of an exposition."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            samples[series] = float(value)
    return samples


def test_page_matches_golden_file() -> None:
    assert golden_page() == GOLDEN.read_text(encoding="utf-8")


def test_golden_page_passes_promtool_lint() -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is required (Debian package 'prometheus')"
    completed = subprocess.run(
        [promtool, "check", "metrics"], input=golden_page(), capture_output=True, text=True, timeout=30
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.strip() == "" and completed.stderr.strip() == ""


def test_scores_follow_the_calibration_at_the_detector_threshold() -> None:
    probabilities = np.array([0.5, 1e-4, 1e-9])
    rendered = render_detector(LATENCY, [{"i": "a"}, {"i": "b"}, {"i": "c"}], probabilities)
    samples = parse_samples(rendered.score_lines)
    expected = anomaly_score(probabilities, LATENCY.tail_probability_threshold)
    for label, score in zip("abc", expected, strict=True):
        key = f'anomaly_score{{detector="api_latency",slo="api_availability",i="{label}"}}'
        assert samples[key] == pytest.approx(score, rel=1e-12)
    # The ordinary sample is below 1, the very improbable one above: the contract users alert on.
    assert expected[0] < 1 < expected[2]
    probability_samples = parse_samples(rendered.probability_lines)
    assert sorted(probability_samples.values()) == sorted(probabilities.tolist())


def test_nan_and_infinite_probabilities_are_not_published_and_are_counted() -> None:
    labels = [{"i": str(i)} for i in range(4)]
    rendered = render_detector(ERRORS, labels, np.array([np.nan, 0.2, np.inf, -np.inf]))
    assert rendered.published == 1
    assert rendered.unscorable == 3
    assert list(parse_samples(rendered.score_lines)) == ['anomaly_score{detector="api_errors",i="1"}']
    assert "nan" not in rendered.score_lines.lower()


def test_a_series_that_vanished_from_the_input_is_gone_from_the_next_page() -> None:
    first = render_detector(ERRORS, [{"i": "kept"}, {"i": "vanishing"}], np.array([0.3, 0.4]))
    second = render_detector(ERRORS, [{"i": "kept"}], np.array([0.3]))
    first_page, second_page = assemble_page([first], []), assemble_page([second], [])
    assert 'i="vanishing"' in first_page
    assert 'i="vanishing"' not in second_page
    assert 'i="kept"' in second_page


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain", "plain"),
        ('say "hi"', 'say \\"hi\\"'),
        ("back\\slash", "back\\\\slash"),
        ("two\nlines", "two\\nlines"),
        ('\\"\n', '\\\\\\"\\n'),
    ],
)
def test_label_values_are_escaped_per_the_exposition_format(raw: str, escaped: str) -> None:
    assert escape_label_value(raw) == escaped


def test_clashing_and_invalid_label_names_are_renamed_and_name_is_dropped() -> None:
    assert exposed_label_name("__name__") is None
    assert exposed_label_name("detector") == "exported_detector"
    assert exposed_label_name("slo") == "exported_slo"
    assert exposed_label_name("detector", taken={"exported_detector"}) == "exported_exported_detector"
    assert exposed_label_name("9bad-name.x") == "_9bad_name_x"
    rendered = render_detector(
        LATENCY, [{"__name__": "m", "detector": "d", "exported_detector": "e", "slo": "s"}], np.array([0.5])
    )
    (series,) = parse_samples(rendered.score_lines)
    labels = dict(re.findall(r'(\w+)="([^"]*)"', series))
    assert labels == {
        "detector": "api_latency",
        "slo": "api_availability",
        "exported_detector": "d",
        "exported_exported_detector": "e",
        "exported_slo": "s",
    }


def test_series_that_collide_after_dropping_the_name_are_published_once() -> None:
    labels = [{"__name__": "a", "job": "x"}, {"__name__": "b", "job": "x"}, {"job": "y"}]
    rendered = render_detector(ERRORS, labels, np.array([0.1, 0.9, 0.5]))
    assert rendered.published == 2
    assert rendered.dropped == 1
    samples = parse_samples(rendered.probability_lines)
    assert samples['anomaly_tail_probability{detector="api_errors",job="x"}'] == 0.1


def test_each_family_appears_once_with_help_and_type_even_when_empty() -> None:
    page = golden_page()
    for metric in ("anomaly_score", "anomaly_tail_probability", "anomaly_driver_info", "anomaly_model_info"):
        assert page.count(f"# TYPE {metric} gauge\n") == 1
        assert page.count(f"# HELP {metric} ") == 1
    empty = assemble_page([], [])
    assert parse_samples(empty) == {}
    assert empty.count("# TYPE") == 4


def test_samples_of_a_family_are_contiguous_across_detectors() -> None:
    lines = [line for line in golden_page().splitlines() if not line.startswith("#")]
    families = [line.split("{", 1)[0] for line in lines]
    # Changes of family name along the page: exactly one per family boundary.
    boundaries = sum(1 for a, b in itertools.pairwise(families) if a != b)
    assert boundaries == len(set(families)) - 1


def test_mismatched_labels_and_probabilities_are_refused_with_context() -> None:
    with pytest.raises(ValueError, match=r"api_errors.*2 label sets"):
        render_detector(ERRORS, [{"i": "a"}, {"i": "b"}], np.array([0.5]))


def labels_of(series: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', series))


def test_driver_lines_only_for_series_scoring_at_least_one_with_the_scores_labels() -> None:
    labels = [{"__name__": "m", "route": r, "detector": "upstream"} for r in ("calm", "edge", "hot")]
    scores = np.array([0.99, 1.0, 7.5])
    rendered = render_detector(
        ERRORS, labels, np.array([0.3, 0.01, 1e-9]), scores, {0: "step_change", 1: "a:b", 2: "level_vs_long"}
    )
    drivers = parse_samples(rendered.driver_lines)
    assert rendered.explained == 2 and set(drivers.values()) == {1.0}
    score_labels = {
        labels_of(series)["route"]: labels_of(series) for series in parse_samples(rendered.score_lines)
    }
    for series in drivers:
        assert series.startswith("anomaly_driver_info{")
        found = labels_of(series)
        driver = found.pop("driver")
        # Exactly the score's label set plus `driver`: what the webhook matches alerts against.
        assert found == score_labels[found["route"]]
        assert (found["route"], driver) in {("edge", "a:b"), ("hot", "level_vs_long")}
    assert found["exported_detector"] == "upstream" and "__name__" not in found


def test_driver_values_are_escaped_and_series_without_driver_get_no_line() -> None:
    rendered = render_detector(
        ERRORS, [{"i": "a"}, {"i": "b"}], np.array([1e-9, 1e-9]), np.array([5.0, 5.0]), {1: 'x"\\\ny'}
    )
    assert (
        rendered.driver_lines == 'anomaly_driver_info{detector="api_errors",i="b",driver="x\\"\\\\\\ny"} 1\n'
    )


def test_an_input_label_named_driver_gets_no_driver_line_instead_of_a_duplicate_label() -> None:
    rendered = render_detector(
        ERRORS, [{"driver": "postgres", "i": "a"}], np.array([1e-9]), np.array([5.0]), {0: "step_change"}
    )
    assert rendered.published == 1 and 'driver="postgres"' in rendered.score_lines
    assert rendered.driver_lines == "" and rendered.explained == 0


def test_dropped_duplicate_and_unscorable_series_get_no_driver_line() -> None:
    labels = [{"__name__": "a", "job": "x"}, {"__name__": "b", "job": "x"}, {"job": "nan"}]
    rendered = render_detector(
        ERRORS,
        labels,
        np.array([1e-9, 1e-9, np.nan]),
        np.array([5.0, 6.0, np.nan]),
        {0: "f0", 1: "f1", 2: "f2"},
    )
    assert list(parse_samples(rendered.driver_lines)) == [
        'anomaly_driver_info{detector="api_errors",job="x",driver="f0"}'
    ]


def test_explained_series_are_those_with_a_finite_score_of_at_least_one() -> None:
    scores = np.array([0.0, 0.999, 1.0, 3.0, np.nan, np.inf])
    assert explained_series(scores).tolist() == [2, 3]
    assert explained_series(np.array([])).tolist() == []
