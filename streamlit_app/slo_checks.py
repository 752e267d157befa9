"""PromQL of an edited SLO, checked before it is stored: by promtool (Prometheus' parser, as
`slo apply` does) and then by the Prometheus the rules will run on, which also knows its own
functions and limits. A refused query stores nothing."""

from __future__ import annotations

import time
from collections.abc import Callable

from slo_pipeline.adapters.prometheus import PrometheusQueryError, fetch_range
from slo_pipeline.adapters.prometheus_connection import PrometheusConnection
from slo_pipeline.slo import promcheck
from slo_pipeline.slo.spec import SLO, render_query

CHECK_TIMEOUT_SECONDS = 4.0


class QueryRefusedError(ValueError):
    """Prometheus refused one of the SLO's queries; the message names the field."""


def query_checker(prometheus: str | PrometheusConnection) -> Callable[[SLO], None]:
    """`check(slo)`: promtool first (SpecError), then each query once against Prometheus."""

    def check(slo: SLO) -> None:
        promcheck.check_slo_queries([slo], source=f"the edit of SLO {slo.name!r}")
        now = time.time()
        for field, query in promcheck.sli_queries(slo).items():
            try:
                fetch_range(
                    prometheus,
                    render_query(query, "5m"),
                    start=now - 60,
                    end=now,
                    step_seconds=60,
                    timeout=CHECK_TIMEOUT_SECONDS,
                )
            except PrometheusQueryError as err:
                raise QueryRefusedError(f"{field}: not saved, Prometheus could not run it: {err}") from err

    return check
