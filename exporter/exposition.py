"""Render anomaly metrics as Prometheus text exposition (format 0.0.4). Pure: no I/O, no clock.

The text is rendered once per scoring cycle and served as-is on every scrape: at 100k series a
pre-rendered page is several times cheaper to serve than a labelled `Gauge` per series or a
custom collector (docs/benchmarks.md), and a scrape can never wait on Prometheus or MLflow.

Label rules (the metric contract in docs/metrics.md):
- every sample carries `detector`, plus `slo` when the detector protects one;
- the input series' labels follow, sorted by name; `__name__` is dropped (the metric name is the
  anomaly metric's own), and input labels called `detector` or `slo` are renamed
  `exported_detector` / `exported_slo` (the convention Prometheus itself uses for clashes), so
  an input label can never impersonate the detector or hijack SLO-aware alert routing;
- label names that are not valid Prometheus names are repaired (invalid characters become `_`);
- two input series that end up with the same label set keep only the first (a scrape with a
  duplicate series is rejected by Prometheus), and the drop is counted.

`anomaly_driver_info` (slo_pipeline/core/explanations.py) carries exactly the score's label set plus
`driver`, and only for series scoring at least 1. A series whose own labels already include
`driver` gets no driver line: renaming the label there would make its label set differ from the
score's (the webhook could no longer match it to the alert), keeping it would duplicate the name.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from slo_pipeline.core.calibration import anomaly_score
from slo_pipeline.core.explanations import DRIVER_INFO_METRIC, DRIVER_LABEL, EXPLAINED_SCORE
from slo_pipeline.settings import DetectorConfig

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

SCORE_METRIC = "anomaly_score"
PROBABILITY_METRIC = "anomaly_tail_probability"
MODEL_INFO_METRIC = "anomaly_model_info"
DRIVER_METRIC = DRIVER_INFO_METRIC

_HELP = {
    SCORE_METRIC: "Anomaly score of the latest sample: above 1 means anomalous at the detector's "
    "false-alarm budget (log tail probability / log threshold).",
    PROBABILITY_METRIC: "Calibrated probability that normal data looks at least this unusual (0..1).",
    MODEL_INFO_METRIC: "The registered model version each detector is scoring with (always 1).",
    DRIVER_METRIC: "The feature that drove the score of each series scoring at least 1 (always 1).",
}

_VALID_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")
_RESERVED_LABELS = ("detector", "slo")
_EXPORTED_PREFIX = "exported_"


@dataclass(frozen=True)
class RenderedDetector:
    """One detector's share of the exposition, ready to be concatenated into the page."""

    detector: str
    score_lines: str
    probability_lines: str
    published: int  # series with a finite score in this cycle
    unscorable: int  # series the model could not score (gaps, warm-up): not published
    dropped: int  # series whose label set duplicated an earlier one after renaming
    driver_lines: str = ""
    explained: int = 0  # series published with an anomaly_driver_info line


@dataclass(frozen=True)
class ModelInfo:
    detector: str
    model_name: str
    model_version: str
    run_id: str


def escape_label_value(value: str) -> str:
    """Backslash, double quote and line feed are the three characters the format escapes."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def exposed_label_name(name: str, taken: Container[str] = ()) -> str | None:
    """The name an input label is published under, or None when it is dropped (`__name__`)."""
    if name == "__name__":
        return None
    if not _VALID_LABEL_NAME.match(name):
        name = _INVALID_LABEL_CHARS.sub("_", name) or "_"
        if name[0].isdigit():
            name = "_" + name
    while name in _RESERVED_LABELS or name in taken:
        name = _EXPORTED_PREFIX + name
    return name


def label_layout(input_names: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """`(exposed name, input name)` pairs in exposition order for one set of input label names."""
    exposed: dict[str, str] = {}
    for name in sorted(input_names):
        exposed_name = exposed_label_name(name, exposed)
        if exposed_name is not None:
            exposed[exposed_name] = name
    return tuple(sorted(exposed.items()))


def series_label_text(
    detector_labels: str, input_labels: Mapping[str, str], layout: tuple[tuple[str, str], ...] | None = None
) -> str:
    """`detector="x",slo="y",<input labels>` — the inside of the braces, without them."""
    if layout is None:
        layout = label_layout(input_labels)
    parts = [detector_labels]
    parts.extend(f'{name}="{escape_label_value(str(input_labels[source]))}"' for name, source in layout)
    return ",".join(parts)


def detector_label_text(detector: DetectorConfig) -> str:
    text = f'detector="{escape_label_value(detector.name)}"'
    if detector.slo:
        text += f',slo="{escape_label_value(detector.slo)}"'
    return text


def explained_series(scores: np.ndarray) -> np.ndarray:
    """Indexes of the series that get an explanation: finite score of at least 1."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.flatnonzero(np.isfinite(scores) & (scores >= EXPLAINED_SCORE))


def render_detector(
    detector: DetectorConfig,
    labels: Sequence[Mapping[str, str]],
    tail_probabilities: np.ndarray,
    scores: np.ndarray | None = None,
    drivers: Mapping[int, str] | None = None,
) -> RenderedDetector:
    """Score and probability lines for every series with a finite tail probability.

    `scores` are the model's anomaly scores (its own threshold for the detector's budget, with
    per-series feedback); without them the score is derived from the detector's nominal
    per-sample threshold. `drivers` maps a series index to the feature that drove its score; a
    driver line is rendered only for a published series that scores at least 1.
    """
    probabilities = np.asarray(tail_probabilities, dtype=np.float64)
    if probabilities.shape != (len(labels),):
        raise ValueError(
            f"detector {detector.name!r}: {len(labels)} label sets but tail probabilities of shape "
            f"{probabilities.shape}"
        )
    finite = np.isfinite(probabilities)
    probabilities = np.clip(probabilities, 0.0, 1.0)
    # `+ 0.0` turns the -0.0 that log(1) / log(threshold) gives into a plain 0.0 on the page.
    if scores is None:
        scores = anomaly_score(probabilities, detector.tail_probability_threshold)
    elif np.shape(scores) != probabilities.shape:
        raise ValueError(
            f"detector {detector.name!r}: scores of shape {np.shape(scores)} for {len(labels)} series"
        )
    scores = np.asarray(scores, dtype=np.float64) + 0.0
    finite &= np.isfinite(scores)

    prefix = detector_label_text(detector)
    # Series of one query almost always share their label names, so the renaming work is done
    # once per distinct name set rather than once per series.
    layouts: dict[tuple[str, ...], tuple[tuple[str, str], ...]] = {}
    score_values = scores.tolist()
    probability_values = probabilities.tolist()
    seen: set[str] = set()
    score_lines: list[str] = []
    probability_lines: list[str] = []
    driver_lines: list[str] = []
    drivers = drivers or {}
    dropped = 0
    for index in np.flatnonzero(finite).tolist():
        series_labels = labels[index]
        names = tuple(series_labels)
        layout = layouts.get(names)
        if layout is None:
            layout = layouts[names] = label_layout(names)
        label_text = series_label_text(prefix, series_labels, layout)
        if label_text in seen:
            dropped += 1
            continue
        seen.add(label_text)
        score_lines.append(f"{SCORE_METRIC}{{{label_text}}} {score_values[index]!r}\n")
        probability_lines.append(f"{PROBABILITY_METRIC}{{{label_text}}} {probability_values[index]!r}\n")
        driver = drivers.get(index)
        if driver and score_values[index] >= EXPLAINED_SCORE and not _has_label(layout, DRIVER_LABEL):
            driver_lines.append(
                f'{DRIVER_METRIC}{{{label_text},{DRIVER_LABEL}="{escape_label_value(driver)}"}} 1\n'
            )
    return RenderedDetector(
        detector=detector.name,
        score_lines="".join(score_lines),
        probability_lines="".join(probability_lines),
        published=len(score_lines),
        unscorable=int(len(labels) - np.count_nonzero(finite)),
        dropped=dropped,
        driver_lines="".join(driver_lines),
        explained=len(driver_lines),
    )


def _has_label(layout: tuple[tuple[str, str], ...], name: str) -> bool:
    return any(exposed == name for exposed, _ in layout)


def render_model_info(models: Iterable[ModelInfo]) -> str:
    lines = []
    for info in models:
        label_text = ",".join(
            f'{name}="{escape_label_value(value)}"'
            for name, value in (
                ("detector", info.detector),
                ("model_name", info.model_name),
                ("model_version", info.model_version),
                ("run_id", info.run_id),
            )
        )
        lines.append(f"{MODEL_INFO_METRIC}{{{label_text}}} 1\n")
    return "".join(lines)


def assemble_page(rendered: Iterable[RenderedDetector], models: Iterable[ModelInfo]) -> str:
    """The anomaly part of `/metrics`: each family once, with HELP and TYPE, samples grouped."""
    rendered = list(rendered)
    return "".join(
        [
            _family_header(SCORE_METRIC),
            *(r.score_lines for r in rendered),
            _family_header(PROBABILITY_METRIC),
            *(r.probability_lines for r in rendered),
            _family_header(DRIVER_METRIC),
            *(r.driver_lines for r in rendered),
            _family_header(MODEL_INFO_METRIC),
            render_model_info(models),
        ]
    )


def _family_header(metric: str) -> str:
    return f"# HELP {metric} {_HELP[metric]}\n# TYPE {metric} gauge\n"
