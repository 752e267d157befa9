"""Render the main panels of grafana/dashboards/*.json to PNG with matplotlib, for the README.

No Grafana server runs here, so these are renderings of the dashboards' own queries: the PromQL of
each panel (variables filled in as Grafana would, via slo_pipeline.devstack.dashboards), evaluated as range
queries against a Prometheus, drawn with the panel's title, unit and threshold. Every image says so.

    .venv/bin/python scripts/render_dashboards.py --prometheus-url http://127.0.0.1:9090 --range 2h

Point it at a running `make demo` (its Prometheus URL is printed at start) after it has run for a
while: the demo injects an incident every five minutes.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import requests

from slo_pipeline.core.durations import parse_duration_ms
from slo_pipeline.devstack import dashboards as queries

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "docs" / "images"
POINTS = 240  # steps per panel, like a Grafana panel a few hundred pixels wide
SCRAPE_SECONDS = 15.0
MAX_LEGEND = 12


@dataclass(frozen=True)
class Figure:
    file: str
    dashboard: str
    panels: tuple[str, ...]
    variables: dict[str, str | list[str]]


FIGURES = (
    Figure(
        "dashboard-detectors.png",
        "slo-pipeline-detectors",
        ("Anomaly score per series", "Share of series anomalous"),
        {"detector": queries.ALL},
    ),
    Figure(
        "dashboard-slos.png",
        "slo-pipeline-slos",
        (
            "Error budget remaining over time",
            "fast (page): 5m and 1h burn rate against the factor",
            "SLO-gated anomaly alerts",
        ),
        {"service": "demo", "slo": queries.ALL},
    ),
    Figure(
        "dashboard-pipeline-health.png",
        "slo-pipeline-health",
        ("Cycle time", "Notifications by status code", "Retrain jobs by status", "Promotions and rejections"),
        {},
    ),
)


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        response = requests.post(
            f"{self.url}/api/v1/query_range",
            data={"query": expr, "start": start, "end": end, "step": step},
            timeout=60,
        )
        body = response.json()
        if body.get("status") != "success":
            raise RuntimeError(f"query failed: {body.get('error')}: {expr}")
        return list(body["data"]["result"])


def legend(template: str, labels: dict[str, str]) -> str:
    if template in ("", "__auto"):
        shown = {k: v for k, v in labels.items() if k not in ("__name__", "job", "instance", "slo")}
        return ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template).strip()


def _find_panel(dashboard: dict[str, Any], title: str) -> dict[str, Any]:
    for panel in dashboard["panels"]:
        if panel.get("title") == title:
            return panel
    raise SystemExit(f"no panel {title!r} in dashboard {dashboard['uid']}")


def _draw_panel(
    axis: Any,
    prometheus: Prometheus,
    dashboard: dict[str, Any],
    panel: dict[str, Any],
    choice: dict[str, str | list[str]],
    window: tuple[float, float, float],
) -> int:
    start, end, step = window
    known = queries.variables(dashboard)
    context = queries.TimeContext(end - start, step, SCRAPE_SECONDS)
    drawn = 0
    defaults = panel["fieldConfig"]["defaults"]
    bars = defaults.get("custom", {}).get("drawStyle") == "bars"
    for target in panel["targets"]:
        expr = queries.substitute(target["expr"], known, choice, context)
        for series in prometheus.range(expr, start, end, step):
            times = [datetime.fromtimestamp(float(t), UTC) for t, _ in series["values"]]
            values = [float(v) for _, v in series["values"]]
            name = legend(target.get("legendFormat", ""), series["metric"])
            style = "--" if name.endswith("factor") else "-"
            if bars:
                axis.step(times, values, where="post", label=name, linewidth=1.2)
            else:
                axis.plot(times, values, style, label=name, linewidth=1.2)
            drawn += 1
    steps = defaults.get("thresholds", {}).get("steps", [])
    if defaults.get("custom", {}).get("thresholdsStyle", {}).get("mode", "off") != "off":
        for threshold in steps[1:]:
            axis.axhline(
                threshold["value"],
                color="red",
                linewidth=1,
                linestyle=":",
                label=f"threshold {threshold['value']:g}",
            )
    if defaults.get("unit") == "percentunit":
        axis.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    elif defaults.get("unit") == "s":
        axis.set_ylabel("seconds")
    elif defaults.get("unit") == "reqps":
        axis.set_ylabel("requests/s")
    if "min" in defaults:
        axis.set_ylim(bottom=defaults["min"])
    axis.set_xlim(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC))
    axis.set_title(panel["title"], fontsize=10, loc="left")
    axis.grid(True, alpha=0.3)
    axis.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    handles, labels = axis.get_legend_handles_labels()
    if handles:
        axis.legend(
            handles[:MAX_LEGEND],
            labels[:MAX_LEGEND],
            fontsize=7,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
        )
    if not drawn:
        axis.text(0.5, 0.5, "no data", transform=axis.transAxes, ha="center", va="center", color="grey")
    return drawn


def _draw_annotations(
    axis: Any,
    prometheus: Prometheus,
    dashboard: dict[str, Any],
    choice: dict[str, Any],
    window: tuple[float, float, float],
) -> None:
    start, end, _ = window
    known = queries.variables(dashboard)
    for query in queries.panel_queries(dashboard):
        if not query.panel.startswith("annotation: "):
            continue
        step = parse_duration_ms(query.step) / 1000 if query.step else 60.0
        expr = queries.substitute(
            query.expr, known, choice, queries.TimeContext(end - start, step, SCRAPE_SECONDS)
        )
        # One line per moment, naming every change then (an exporter start loads all models at once).
        changes: dict[float, list[str]] = {}
        for series in prometheus.range(expr, start, end, step):
            changes.setdefault(float(series["values"][0][0]), []).append(
                legend(query.legend, series["metric"])
            )
        for at, texts in sorted(changes.items()):
            moment = datetime.fromtimestamp(at, UTC)
            axis.axvline(moment, color="purple", linewidth=1, alpha=0.6)
            axis.annotate(
                "\n".join(sorted(texts)),
                (moment, 0.98),
                xycoords=("data", "axes fraction"),
                fontsize=6,
                color="purple",
                va="top",
                ha="left",
                xytext=(3, 0),
                textcoords="offset points",
            )


def _span(seconds: float) -> str:
    return f"{seconds / 3600:g} hours" if seconds >= 7200 else f"{seconds / 60:.0f} minutes"


def render(prometheus: Prometheus, range_seconds: float, out_dir: Path, source: str) -> list[Path]:
    dashboards = queries.load_dashboards()
    end = time.time()
    start = end - range_seconds
    step = max(SCRAPE_SECONDS, round(range_seconds / POINTS))
    window = (start, end, step)
    written = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for figure in FIGURES:
        dashboard = dashboards[figure.dashboard]
        fig, axes = plt.subplots(len(figure.panels), 1, figsize=(13, 2.9 * len(figure.panels)), squeeze=False)
        for index, title in enumerate(figure.panels):
            axis = axes[index][0]
            _draw_panel(axis, prometheus, dashboard, _find_panel(dashboard, title), figure.variables, window)
            if index == 0:
                _draw_annotations(axis, prometheus, dashboard, figure.variables, window)
        when = datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%d %H:%M UTC")
        fig.suptitle(
            f"{dashboard['title']} — matplotlib rendering of the dashboard's queries "
            "(grafana/dashboards), not a Grafana screenshot\n"
            f"{source}, the {_span(range_seconds)} up to {when}",
            fontsize=10,
        )
        fig.tight_layout()
        path = out_dir / figure.file
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prometheus-url", required=True, help="the Prometheus of a running demo")
    parser.add_argument(
        "--range", default="2h", help="how far back to draw (Prometheus duration, default 2h)"
    )
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="folder for the PNGs (default docs/images)")
    parser.add_argument("--source", default="`make demo`", help="where the data came from, for the caption")
    args = parser.parse_args(argv)
    try:
        paths = render(
            Prometheus(args.prometheus_url), parse_duration_ms(args.range) / 1000, args.out, args.source
        )
    except (requests.RequestException, RuntimeError, ValueError) as err:
        print(f"render-dashboards: {err}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
