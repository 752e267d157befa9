"""Issue 9 finding 9: old raw deliveries are pruned by the worker, never an incident's own."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import requests

from slo_pipeline.devstack.launch import ManagedProcess
from slo_pipeline.settings import PipelineConfig, load_settings
from tests.fixtures.database import WEBHOOK_TOKEN, fetch_all, make_alert, make_notification
from worker.runner import RetrainWorker

pytestmark = pytest.mark.integration


def post(webhook: ManagedProcess, body: object) -> int:
    headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"}
    return requests.post(
        f"{webhook.url}/alerts", data=json.dumps(body), headers=headers, timeout=30
    ).status_code


def test_worker_prunes_expired_deliveries_but_keeps_each_incidents_first_and_last(
    database_url: str, webhook_factory: Callable[..., ManagedProcess]
) -> None:
    webhook = webhook_factory(database_url)
    # One incident seen by three deliveries (first, a repeat, last), a refused delivery, and a
    # recent repeat that is within the retention.
    assert post(webhook, make_notification(make_alert("f1"), group_key="a")) == 200
    assert post(webhook, make_notification(make_alert("f1"), group_key="b")) == 200
    assert post(webhook, make_notification(make_alert("f1"), group_key="c")) == 200
    assert post(webhook, {"version": "4", "groupKey": "bad"}) == 400
    fetch_all(
        database_url, "UPDATE alert_deliveries SET received_at = now() - interval '40 days' RETURNING id"
    )
    assert post(webhook, make_notification(make_alert("f2"), group_key="d")) == 200
    assert post(webhook, make_notification(make_alert("f2"), group_key="e")) == 200
    assert post(webhook, make_notification(make_alert("f2"), group_key="f")) == 200

    settings = load_settings(database_url=database_url, pipeline=PipelineConfig())  # 30 days by default
    deleted = RetrainWorker(settings).prune_deliveries()

    assert deleted == 2  # f1's middle repeat and the refused body
    kept = fetch_all(database_url, "SELECT group_key FROM alert_deliveries ORDER BY id")
    assert kept == [("a",), ("c",), ("d",), ("e",), ("f",)]
    assert fetch_all(database_url, "SELECT fingerprint FROM incidents ORDER BY fingerprint") == [
        ("f1",),
        ("f2",),
    ]
    assert RetrainWorker(settings).prune_deliveries() == 0
