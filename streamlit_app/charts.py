"""Altair (Vega-Lite) charts for the pages. Pure: DataFrames in, chart specs out.

Streamlit renders them natively and applies its own light or dark theme (axis and label colours
come from the theme, never from here); the few fixed colours (thresholds, shaded spans) are
mid-tones that read on both backgrounds.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

# What the builders return: altair's chart types (its stubs widen `.properties()` this far).
Chart = alt.Chart | alt.LayerChart | alt.FacetChart
THRESHOLD_COLOUR = "#e45756"  # a red that reads on white and on Streamlit's dark grey
SPAN_COLOUR = "#f58518"
HEIGHT = 220
TIME_AXIS = alt.X("time:T", title=None, axis=alt.Axis(format="%d %b %H:%M", labelAngle=0))
Domain = tuple[pd.Timestamp, pd.Timestamp] | None


def _time_axis(domain: Domain) -> alt.X:
    """The time axis, over `domain` when given (the range the operator picked, not just the data)."""
    if domain is None:
        return TIME_AXIS
    return alt.X(
        "time:T",
        title=None,
        axis=alt.Axis(format="%d %b %H:%M", labelAngle=0),
        scale=alt.Scale(domain=[domain[0].isoformat(), domain[1].isoformat()]),
    )


def _time_axis_of(frame: pd.DataFrame) -> alt.X:
    """The time axis, labelled finely enough for the data's span: a few minutes of an incident
    labelled "%d %b %H:%M" repeat the same minute under every 30 s tick."""
    times = pd.to_datetime(frame["time"]) if "time" in frame and not frame.empty else pd.Series([])
    span = (times.max() - times.min()).total_seconds() if len(times) else 0.0
    fmt = "%H:%M:%S" if span <= 20 * 60 else "%H:%M" if span <= 12 * 3600 else "%d %b %H:%M"
    return alt.X("time:T", title=None, axis=alt.Axis(format=fmt, labelAngle=0))


def _time_marks(marks: pd.DataFrame | None) -> list[alt.Chart]:
    """Shaded `start`..`end` spans (fired alerts, an incident) on a time axis."""
    if marks is None or marks.empty:
        return []
    return [
        alt.Chart(marks)
        .mark_rect(opacity=0.18, color=SPAN_COLOUR)
        .encode(x="start:T", x2="end:T", tooltip=["name:N", "start:T", "end:T"])
    ]


def budget_burndown(frame: pd.DataFrame, alerts: pd.DataFrame | None = None, domain: Domain = None) -> Chart:
    """Error budget left over the period (100 % = untouched, 0 % = spent), as in Pyrra."""
    data = frame.assign(percent=frame["value"] * 100)
    line = (
        alt.Chart(data)
        .mark_area(line=True, opacity=0.25)
        .encode(
            x=_time_axis(domain),
            y=alt.Y("percent:Q", title="error budget left (%)"),
            tooltip=[alt.Tooltip("time:T", format="%d %b %H:%M"), alt.Tooltip("percent:Q", format=".2f")],
        )
    )
    zero = (
        alt.Chart(pd.DataFrame({"y": [0.0]}))
        .mark_rule(color=THRESHOLD_COLOUR, strokeDash=[4, 4])
        .encode(y="y:Q")
    )
    return alt.layer(*_time_marks(alerts), line, zero).properties(height=HEIGHT)


def error_ratio(
    frame: pd.DataFrame, budget_ratio: float, alerts: pd.DataFrame | None = None, domain: Domain = None
) -> Chart:
    """The SLI's error ratio per window against the error budget (1 - objective)."""
    lines = (
        alt.Chart(frame)
        .mark_line()
        .encode(
            x=_time_axis(domain),
            y=alt.Y("value:Q", title="error ratio", axis=alt.Axis(format="%")),
            color=alt.Color("window:N", title="window"),
            tooltip=[
                "window:N",
                alt.Tooltip("time:T", format="%d %b %H:%M"),
                alt.Tooltip("value:Q", format=".4%"),
            ],
        )
    )
    objective = (
        alt.Chart(pd.DataFrame({"y": [budget_ratio], "label": ["error budget (1 - objective)"]}))
        .mark_rule(color=THRESHOLD_COLOUR, strokeDash=[6, 3])
        .encode(y="y:Q", tooltip=["label:N", alt.Tooltip("y:Q", format=".4%")])
    )
    return alt.layer(*_time_marks(alerts), lines, objective).properties(height=HEIGHT)


def burn_rates(
    frame: pd.DataFrame, factors: dict[str, float], alerts: pd.DataFrame | None = None, domain: Domain = None
) -> Chart:
    """Each tier's burn rate (min of its two windows) with its alert factor as a dashed rule."""
    tiers = list(factors)
    colour = alt.Color("tier:N", title="tier", sort=tiers, scale=alt.Scale(domain=tiers))
    lines = (
        alt.Chart(frame)
        .mark_line()
        .encode(
            x=_time_axis(domain),
            y=alt.Y("value:Q", title="burn rate (x budget)", scale=alt.Scale(type="symlog")),
            color=colour,
            tooltip=[
                "tier:N",
                alt.Tooltip("time:T", format="%d %b %H:%M"),
                alt.Tooltip("value:Q", format=".2f"),
            ],
        )
    )
    rules = (
        alt.Chart(pd.DataFrame({"tier": tiers, "factor": [factors[t] for t in tiers]}))
        .mark_rule(strokeDash=[6, 3])
        .encode(y="factor:Q", color=colour, tooltip=["tier:N", "factor:Q"])
    )
    return alt.layer(*_time_marks(alerts), lines, rules).properties(height=HEIGHT)


def score_with_threshold(
    frame: pd.DataFrame, threshold: float, span: pd.DataFrame | None = None, title: str = "anomaly score"
) -> Chart:
    """Series over time (`time`, `series`, `value`), a threshold rule, an optional shaded span."""
    lines = (
        alt.Chart(frame)
        .mark_line()
        .encode(
            x=_time_axis_of(frame),
            y=alt.Y("value:Q", title=title),
            color=alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom", labelLimit=400)),
            tooltip=[
                "series:N",
                alt.Tooltip("time:T", format="%d %b %H:%M"),
                alt.Tooltip("value:Q", format=".3g"),
            ],
        )
    )
    rule = (
        alt.Chart(pd.DataFrame({"y": [threshold]}))
        .mark_rule(color=THRESHOLD_COLOUR, strokeDash=[6, 3])
        .encode(y="y:Q")
    )
    return alt.layer(*_time_marks(span), lines, rule).properties(height=HEIGHT)


def lines(frame: pd.DataFrame, y_title: str, span: pd.DataFrame | None = None) -> Chart:
    """Plain `time`, `series`, `value` lines (a driving SLI, an SLO's burn) with an optional span."""
    chart = (
        alt.Chart(frame)
        .mark_line()
        .encode(
            x=_time_axis_of(frame),
            y=alt.Y("value:Q", title=y_title),
            color=alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom", labelLimit=400)),
            tooltip=[
                "series:N",
                alt.Tooltip("time:T", format="%d %b %H:%M"),
                alt.Tooltip("value:Q", format=".3g"),
            ],
        )
    )
    return alt.layer(*_time_marks(span), chart).properties(height=HEIGHT)


def metric_by_version(frame: pd.DataFrame, metrics: Sequence[str]) -> Chart:
    """Validation metrics (`version`, `metric`, `value`) across model versions, one panel each."""
    data = frame[frame["metric"].isin(list(metrics))]
    return (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("version:O", title="model version", sort=alt.SortField("version_number")),
            y=alt.Y("value:Q", title=None, axis=alt.Axis(format="~g")),  # a flat 0 reads "0"
            color=alt.Color("decision:N", title="decision"),
            tooltip=["version:O", "metric:N", alt.Tooltip("value:Q", format=".3g"), "decision:N"],
        )
        .properties(height=140, width=220)
        .facet(facet=alt.Facet("metric:N", title=None), columns=3)
        .resolve_scale(y="independent")
    )


def alarms_per_week(frame: pd.DataFrame, current: float, proposed: float) -> Chart:
    """Replayed alarms per week (`budget`, `alarms_per_week`) against the false-alarm budget."""
    curve = (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X(
                "budget:Q", title="false-alarm budget (per series per week)", scale=alt.Scale(type="log")
            ),
            # "~f": an all-zero curve reads "0", not "0.000000"
            y=alt.Y("alarms_per_week:Q", title="alarms/week (replayed)", axis=alt.Axis(format="~f")),
            tooltip=[alt.Tooltip("budget:Q", format=".3g"), alt.Tooltip("alarms_per_week:Q", format=".2f")],
        )
    )
    marks = pd.DataFrame({"budget": [current, proposed], "which": ["current", "proposed"]})
    rules = (
        alt.Chart(marks)
        .mark_rule(strokeDash=[6, 3])
        .encode(
            x="budget:Q",
            # The palette's second colour is a dark blue that vanishes on the dark theme.
            color=alt.Color("which:N", title=None, scale=alt.Scale(range=[THRESHOLD_COLOUR, SPAN_COLOUR])),
            tooltip=["which:N", "budget:Q"],
        )
    )
    return alt.layer(curve, rules).properties(height=HEIGHT)


def score_with_two_thresholds(frame: pd.DataFrame, current: float, proposed: float) -> Chart:
    """A score line with the current (1) and the proposed threshold as labelled dashed rules."""
    line = (
        alt.Chart(frame)
        .mark_line()
        .encode(
            x=_time_axis_of(frame),
            y=alt.Y("value:Q", title="score (current scale)"),
            tooltip=[alt.Tooltip("time:T", format="%d %b %H:%M"), alt.Tooltip("value:Q", format=".3g")],
        )
    )
    marks = pd.DataFrame({"y": [current, proposed], "which": ["current threshold", "proposed threshold"]})
    rules = (
        alt.Chart(marks)
        .mark_rule(strokeDash=[6, 3], strokeWidth=2)
        .encode(
            y="y:Q",
            color=alt.Color(
                "which:N",
                title=None,
                scale=alt.Scale(range=[THRESHOLD_COLOUR, SPAN_COLOUR]),
                legend=alt.Legend(orient="bottom"),
            ),
            tooltip=["which:N", alt.Tooltip("y:Q", format=".3g")],
        )
    )
    return alt.layer(line, rules).properties(height=HEIGHT)
