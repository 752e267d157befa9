"""The PromQL of the Grafana dashboards in grafana/dashboards/, as Grafana would send it. Pure.

Used by the test that evaluates every panel against a real Prometheus and by the PNG renderer,
so both run exactly the queries a user's Grafana runs: every panel target, every annotation
query and every template-variable query, with `$var` / `${var}` / `${var:regex}` / `[[var]]`
and Grafana's `$__interval`, `$__rate_interval` and `$__range` filled in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slo_pipeline.devstack.launch import REPO_ROOT

DASHBOARD_DIR = REPO_ROOT / "grafana" / "dashboards"

# `label_values(metric{...}, label)` and `label_values(label)`: Grafana's variable query syntax.
_LABEL_VALUES = re.compile(
    r"^\s*label_values\(\s*(?:(?P<selector>.+?)\s*,\s*)?(?P<label>[A-Za-z_]\w*)\s*\)\s*$"
)
_VARIABLE = re.compile(
    r"\$\{(?P<braced>\w+)(?::(?P<format>\w+))?\}|\[\[(?P<bracketed>\w+)\]\]|\$(?P<plain>\w+)"
)
ALL = "$__all"
# Regex metacharacters Grafana escapes in a multi-value variable used inside `=~"..."`.
_REGEX_SPECIAL = re.compile(r"([\\^$.|?*+()\[\]{}])")


class DashboardError(ValueError):
    """A dashboard file that cannot be read, or a query that refers to an unknown variable."""


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str  # the dashboard's uid
    panel: str  # panel title, or "annotation: NAME" / "variable: NAME"
    ref_id: str
    expr: str  # raw, with the dashboard's variables in it
    instant: bool
    legend: str = ""
    step: str | None = None  # an annotation's own step, e.g. "1m"


@dataclass(frozen=True)
class Variable:
    name: str
    query: str  # label_values(...) or a constant
    multi: bool
    include_all: bool
    all_value: str | None


def load_dashboards(folder: Path = DASHBOARD_DIR) -> dict[str, dict[str, Any]]:
    """uid -> dashboard JSON of every *.json file in `folder`."""
    dashboards: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise DashboardError(f"cannot read dashboard {str(path)!r}: {err}") from err
        uid = document.get("uid")
        if not uid or uid in dashboards:
            raise DashboardError(f"dashboard {str(path)!r} needs a unique uid, has {uid!r}")
        dashboards[uid] = document
    return dashboards


def _panels(panels: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])  # panels inside collapsed rows


def panel_queries(dashboard: Mapping[str, Any]) -> list[PanelQuery]:
    """Every PromQL target of every panel, then every Prometheus annotation query."""
    uid = str(dashboard["uid"])
    queries = []
    for panel in _panels(dashboard.get("panels") or []):
        for target in panel.get("targets") or []:
            if target.get("hide") or not target.get("expr"):
                continue
            queries.append(
                PanelQuery(
                    dashboard=uid,
                    panel=str(panel.get("title", "")),
                    ref_id=str(target.get("refId", "")),
                    expr=str(target["expr"]),
                    instant=bool(target.get("instant")) and not target.get("range"),
                    legend=str(target.get("legendFormat") or ""),
                )
            )
    for annotation in (dashboard.get("annotations") or {}).get("list") or []:
        if annotation.get("expr"):
            queries.append(
                PanelQuery(
                    dashboard=uid,
                    panel=f"annotation: {annotation.get('name', '')}",
                    ref_id="annotation",
                    expr=str(annotation["expr"]),
                    instant=False,
                    legend=str(annotation.get("titleFormat") or ""),
                    step=annotation.get("step"),
                )
            )
    return queries


def variables(dashboard: Mapping[str, Any]) -> list[Variable]:
    """The dashboard's query variables in declaration order (later ones may use earlier ones)."""
    found = []
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        if variable.get("type") not in ("query", "constant", "custom"):
            continue  # datasource variables select the Prometheus, not part of a query
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        found.append(
            Variable(
                name=str(variable["name"]),
                query=str(query or ""),
                multi=bool(variable.get("multi")),
                include_all=bool(variable.get("includeAll")),
                all_value=variable.get("allValue"),
            )
        )
    return found


def parse_label_values(query: str) -> tuple[str | None, str]:
    """`label_values(up{job="x"}, instance)` -> ('up{job="x"}', 'instance')."""
    match = _LABEL_VALUES.match(query)
    if match is None:
        raise DashboardError(f"unsupported variable query {query!r}: only label_values(...) is used")
    return match.group("selector"), match.group("label")


def _regex_escape(value: str) -> str:
    # Two backslashes: one for the regex, one for the PromQL string literal it sits in.
    return _REGEX_SPECIAL.sub(r"\\\\\1", value)


def format_value(variable: Variable, value: str | Sequence[str], fmt: str | None) -> str:
    """What Grafana puts in the query for `value` (a list for multi-value, ALL for "All")."""
    if value == ALL or (not isinstance(value, str) and list(value) == [ALL]):
        if variable.all_value is not None:
            return variable.all_value
        raise DashboardError(f"variable {variable.name!r} selects All but has no allValue")
    values = [value] if isinstance(value, str) else list(value)
    # Grafana's Prometheus datasource regex-escapes the values of multi-value and "All" variables
    # (they are meant for `=~`), and of any variable written ${var:regex}.
    if fmt == "regex" or (fmt is None and (variable.multi or variable.include_all)):
        escaped = [_regex_escape(v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    if len(values) != 1:
        raise DashboardError(f"variable {variable.name!r} has {len(values)} values but format {fmt!r}")
    return values[0]


@dataclass(frozen=True)
class TimeContext:
    """Grafana's built-in variables for one request."""

    range_seconds: float
    interval_seconds: float  # $__interval: the step Grafana chooses for the panel
    scrape_interval_seconds: float  # the datasource's timeInterval

    @property
    def rate_interval_seconds(self) -> float:
        # Grafana: max($__interval + scrape interval, 4 * scrape interval).
        return max(self.interval_seconds + self.scrape_interval_seconds, 4 * self.scrape_interval_seconds)


def _duration(seconds: float) -> str:
    return f"{max(1, round(seconds))}s"


def substitute(
    expr: str,
    known: Sequence[Variable],
    values: Mapping[str, str | Sequence[str]],
    time: TimeContext,
) -> str:
    """`expr` with every variable replaced as Grafana would; unknown variables are an error."""
    by_name = {variable.name: variable for variable in known}
    builtins = {
        "__interval": _duration(time.interval_seconds),
        "__interval_ms": str(round(time.interval_seconds * 1000)),
        "__rate_interval": _duration(time.rate_interval_seconds),
        "__range": _duration(time.range_seconds),
        "__range_s": str(round(time.range_seconds)),
    }

    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bracketed") or match.group("plain")
        if name in builtins:
            return builtins[name]
        if name not in by_name or name not in values:
            raise DashboardError(f"query {expr!r} uses ${name}, which has no value")
        return format_value(by_name[name], values[name], match.group("format"))

    return _VARIABLE.sub(replace, expr)
