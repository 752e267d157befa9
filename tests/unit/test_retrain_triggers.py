"""Which alerts enqueue retraining of which detectors (webhook/retrain_triggers.py, pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from webhook.payload import Alert
from webhook.retrain_triggers import (
    RetrainRequest,
    burn_rate_pages,
    is_burn_rate_page,
    select_retrains,
    split_configured,
)

STARTS = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
# What the generated rules in rules/slo/demo.rules.yml put on their alerts (rulegen).
FAST_PAGE = {
    "alertname": "DemoAvailabilitySLO",
    "severity": "page",
    "burn_tier": "fast",
    "slo": "demo-availability",
    "short": "5m",
    "long": "1h",
}
LINKS = {"demo-availability": ["demo_error_ratio", "demo_request_rate"]}


def alert(fingerprint: str, *, status: str = "firing", **labels: str) -> Alert:
    return Alert(
        status=status,
        labels=labels,
        annotations={},
        starts_at=STARTS,
        ends_at=None if status == "firing" else STARTS,
        generator_url="",
        fingerprint=fingerprint,
    )


def page(fingerprint: str, **overrides: str) -> Alert:
    return alert(fingerprint, **{**FAST_PAGE, **overrides})


def summary(requests: list[RetrainRequest]) -> list[tuple[str, str]]:
    return [(request.detector, request.alert.fingerprint) for request in requests]


@pytest.mark.parametrize("tier", ["fast", "medium"])
def test_fast_and_medium_burn_rate_pages_trigger(tier: str) -> None:
    assert is_burn_rate_page(page("p", burn_tier=tier))


@pytest.mark.parametrize(
    ("name", "candidate"),
    [
        ("resolved", alert("p", status="resolved", **FAST_PAGE)),
        ("slow tier ticket", page("p", burn_tier="slow", severity="ticket")),
        ("slowest tier ticket", page("p", burn_tier="slowest", severity="ticket")),
        ("slow tier relabelled to page", page("p", burn_tier="slow")),
        ("fast tier as ticket", page("p", severity="ticket")),
        ("no slo", alert("p", alertname="X", severity="page", burn_tier="fast")),
        ("empty slo", page("p", slo="")),
        # The SLO-gated anomaly page has an slo but no burn_tier: not a budget breach by itself.
        ("gated anomaly page", alert("p", alertname="AnomalyThreatensSLO", severity="page", slo="s")),
    ],
)
def test_other_alerts_are_not_burn_rate_pages(name: str, candidate: Alert) -> None:
    assert not is_burn_rate_page(candidate), name
    assert select_retrains([candidate], {"demo-availability": ["d"], "s": ["d"]}) == []


def test_page_retrains_every_linked_detector_with_a_reason_naming_alert_and_slo() -> None:
    requests = select_retrains([page("p1")], LINKS)
    assert summary(requests) == [("demo_error_ratio", "p1"), ("demo_request_rate", "p1")]
    assert requests[0].reason == (
        "burn-rate page DemoAvailabilitySLO for SLO demo-availability (burn_tier fast, fingerprint p1)"
    )


def test_unknown_slo_or_slo_without_detectors_requests_nothing() -> None:
    assert select_retrains([page("p1", slo="unknown")], LINKS) == []
    assert select_retrains([page("p1")], {"demo-availability": []}) == []
    assert select_retrains([page("p1")], {}) == []


def test_fastest_tier_links_the_job_when_one_notification_has_several() -> None:
    medium = page("a-medium", burn_tier="medium", short="30m", long="6h")
    fast = page("b-fast")
    assert burn_rate_pages([medium, fast]) == {"demo-availability": fast}
    assert summary(select_retrains([medium, fast], LINKS)) == [
        ("demo_error_ratio", "b-fast"),
        ("demo_request_rate", "b-fast"),
    ]
    # Same tier twice (e.g. two label sets): the first alert wins, deterministically.
    assert burn_rate_pages([page("x"), page("y")])["demo-availability"].fingerprint == "x"


def test_one_request_per_detector_and_the_detector_alert_wins() -> None:
    detector_alert = alert(
        "r1", alertname="AnomalyDetectorNeedsRetraining", retrain="true", detector="shared"
    )
    other_page = page("p2", slo="demo-latency", alertname="DemoLatencySLO")
    links = {**LINKS, "demo-latency": ["shared", "demo_error_ratio", "demo_latency_p95"]}
    requests = select_retrains([page("p1"), other_page, detector_alert], links)
    assert summary(requests) == [
        ("demo_error_ratio", "p1"),  # linked to both SLOs: the first paged SLO by name wins
        ("demo_latency_p95", "p2"),
        ("demo_request_rate", "p1"),
        ("shared", "r1"),
    ]
    assert requests[-1].reason == "alert AnomalyDetectorNeedsRetraining fired (fingerprint r1)"


def test_detector_retrain_alerts_keep_their_rules() -> None:
    alerts = [
        alert("f1", alertname="A", retrain="true", detector="d1"),
        alert("f2", alertname="A", retrain="true", detector="d1"),
        alert("f3", alertname="A", retrain="true", detector="d2"),
        alert("f4", alertname="A", detector="d3"),  # no retrain label
        alert("f5", alertname="A", retrain="true"),  # no detector
        alert("f6", alertname="A", status="resolved", retrain="true", detector="d4"),
    ]
    assert summary(select_retrains(alerts, {})) == [("d1", "f1"), ("d2", "f3")]


def test_empty_detector_names_from_a_hand_edited_spec_are_ignored() -> None:
    assert summary(select_retrains([page("p1")], {"demo-availability": ["", "d"]})) == [("d", "p1")]


def test_only_configured_detectors_keep_their_requests() -> None:
    names = ["made_up", "d1", "x" * 50]
    alerts = [alert(f"f{i}", retrain="true", detector=name) for i, name in enumerate(names)]
    kept, unconfigured = split_configured(select_retrains(alerts, {}), {"d1", "d2"})
    assert [(r.detector, r.alert.fingerprint) for r in kept] == [("d1", "f1")]
    assert unconfigured == 2
