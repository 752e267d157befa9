"""Inhibition rules checked on a real Alertmanager: post alerts, read back who is suppressed."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests

from slo_pipeline.devstack.launch import ManagedProcess, free_port
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.integration


def _alert(name: str, **labels: str) -> dict[str, object]:
    return {"labels": {"alertname": name, **labels}, "annotations": {}}


def _states(alertmanager: ManagedProcess) -> dict[str, str]:
    response = requests.get(f"{alertmanager.url}/api/v2/alerts", timeout=5)
    response.raise_for_status()
    return {
        alert["labels"]["alertname"] + "/" + alert["labels"].get("slo", "-"): alert["status"]["state"]
        for alert in response.json()
    }


def _states_when_settled(alertmanager: ManagedProcess, expected_suppressed: set[str]) -> dict[str, str]:
    """Wait until the inhibitions have been computed (after group_wait). The caller then judges
    the whole state, so a wrongly suppressed alert shows up too."""
    return wait_until(
        lambda: _states(alertmanager),
        timeout=20,
        describe=f"Alertmanager to suppress {sorted(expected_suppressed)}",
        until=lambda states: (
            {key for key, state in states.items() if state == "suppressed"} >= expected_suppressed
        ),
    )


def test_pages_and_faster_burn_tiers_inhibit_within_the_same_slo(
    alertmanager_factory: Callable[..., ManagedProcess],
) -> None:
    # No webhook listens here: notifications fail, but inhibition does not depend on delivery.
    alertmanager = alertmanager_factory(webhook_base_url=f"http://127.0.0.1:{free_port()}")
    alerts = [
        _alert("BurnFast", slo="checkout", severity="page", burn_tier="fast"),
        _alert("BurnMedium", slo="checkout", severity="page", burn_tier="medium"),
        _alert("BurnSlow", slo="checkout", severity="ticket", burn_tier="slow"),
        _alert("AnomalyDetected", slo="checkout", severity="ticket", detector="checkout"),
        # Another SLO: nothing of checkout's may silence it.
        _alert("BurnSlow", slo="search", severity="ticket", burn_tier="slow"),
        _alert("AnomalyDetected", slo="search", severity="ticket", detector="search"),
        # No slo label at all: a page must not silence it just because both lack `slo`.
        _alert("AnomalyExporterDown", severity="ticket"),
        _alert("NoSloPage", severity="page"),
    ]
    response = requests.post(f"{alertmanager.url}/api/v2/alerts", json=alerts, timeout=5)
    assert response.status_code == 200, response.text

    expected_suppressed = {"BurnMedium/checkout", "BurnSlow/checkout", "AnomalyDetected/checkout"}
    states = _states_when_settled(alertmanager, expected_suppressed)

    suppressed = {key for key, state in states.items() if state == "suppressed"}
    assert suppressed == expected_suppressed, states
    assert states["BurnFast/checkout"] == "active"
    assert states["AnomalyExporterDown/-"] == "active"
