"""Alertmanager v4 payload validation (pure)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from webhook.payload import (
    PayloadError,
    delivery_key,
    parse_json,
    parse_notification,
    parse_timestamp,
)


def alert(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "status": "firing",
        "labels": {"alertname": "AnomalyHigh", "detector": "checkout_latency", "severity": "ticket"},
        "annotations": {"summary": "anomaly score above 1"},
        "startsAt": "2024-05-01T10:00:00.123456789Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph?g0.expr=x",
        "fingerprint": "a1b2c3d4e5f60718",
    }
    base.update(overrides)
    return base


def notification(*alerts: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "version": "4",
        "groupKey": '{}:{alertname="AnomalyHigh"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "ticket",
        "groupLabels": {"alertname": "AnomalyHigh"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts) or [alert()],
    }
    base.update(overrides)
    return base


def rejection(document: Any) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        parse_notification(document)
    return caught.value


def test_valid_firing_notification_becomes_typed_alerts() -> None:
    parsed = parse_notification(
        notification(alert(), alert(fingerprint="ffff", status="resolved", endsAt="2024-05-01T10:05:00Z"))
    )
    assert parsed.receiver == "ticket"
    assert parsed.group_key == '{}:{alertname="AnomalyHigh"}'
    first, second = parsed.alerts
    assert first.starts_at == datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert first.ends_at is None  # Go zero time while firing
    assert first.alertname == "AnomalyHigh"
    assert first.detector == "checkout_latency"
    assert first.severity == "ticket"
    assert first.slo is None
    assert second.status == "resolved"
    assert second.ends_at == datetime(2024, 5, 1, 10, 5, tzinfo=UTC)


def test_firing_alert_with_future_ends_at_stays_open() -> None:
    parsed = parse_notification(notification(alert(endsAt="2099-01-01T00:00:00Z")))
    assert parsed.alerts[0].ends_at is None


@pytest.mark.parametrize(
    ("mutate", "field_path"),
    [
        (lambda d: d.pop("version"), "version"),
        (lambda d: d.update(version="3"), "version"),
        (lambda d: d.update(version=4), "version"),
        (lambda d: d.pop("receiver"), "receiver"),
        (lambda d: d.pop("groupKey"), "groupKey"),
        (lambda d: d.update(status="pending"), "status"),
        (lambda d: d.pop("alerts"), "alerts"),
        (lambda d: d.update(alerts={"not": "a list"}), "alerts"),
        (lambda d: d.update(truncatedAlerts=-1), "truncatedAlerts"),
        (lambda d: d["alerts"].append("nope"), "alerts[1]"),
        (lambda d: d["alerts"][0].pop("labels"), "alerts[0].labels"),
        (lambda d: d["alerts"][0].update(labels={}), "alerts[0].labels"),
        (lambda d: d["alerts"][0]["labels"].update(severity=3), "alerts[0].labels.severity"),
        (lambda d: d["alerts"][0].update(annotations=[]), "alerts[0].annotations"),
        (lambda d: d["alerts"][0].pop("startsAt"), "alerts[0].startsAt"),
        (lambda d: d["alerts"][0].update(startsAt="yesterday"), "alerts[0].startsAt"),
        (lambda d: d["alerts"][0].update(startsAt="2024-05-01T10:00:00"), "alerts[0].startsAt"),
        (lambda d: d["alerts"][0].update(startsAt="0001-01-01T00:00:00Z"), "alerts[0].startsAt"),
        (lambda d: d["alerts"][0].update(startsAt="9999-12-31T23:59:59-05:00"), "alerts[0].startsAt"),
        (lambda d: d["alerts"][0].update(endsAt=5), "alerts[0].endsAt"),
        (lambda d: d["alerts"][0].update(status="resolved"), "alerts[0].endsAt"),
        (lambda d: d["alerts"][0].pop("fingerprint"), "alerts[0].fingerprint"),
        (lambda d: d["alerts"][0].update(fingerprint=""), "alerts[0].fingerprint"),
        (lambda d: d["alerts"][0].update(generatorURL=None), "alerts[0].generatorURL"),
        (lambda d: d["alerts"][0].update(status="unknown"), "alerts[0].status"),
    ],
)
def test_each_malformed_field_is_named(mutate: Any, field_path: str) -> None:
    document = copy.deepcopy(notification())
    mutate(document)
    error = rejection(document)
    assert error.field_path == field_path
    assert str(error).startswith(f"{field_path}: ")


@pytest.mark.parametrize("document", [[], "text", 4, None, True])
def test_non_object_notification_is_rejected(document: Any) -> None:
    assert "must be a JSON object" in str(rejection(document))


@pytest.mark.parametrize("body", [b"", b"   ", b"{not json", b"\xff\xfe{}", b'{"a": NaN}'])
def test_parse_json_rejects_what_postgres_would(body: bytes) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_json(body)
    assert "JSON" in str(caught.value) or "empty" in str(caught.value)


def test_parse_json_accepts_alertmanager_bytes() -> None:
    assert parse_json(orjson.dumps(notification()))["version"] == "4"


def test_delivery_key_is_lenient_for_bad_documents() -> None:
    assert delivery_key({"receiver": "r", "status": 5, "groupKey": "g"}).status is None
    key = delivery_key({"receiver": "r", "status": "firing", "groupKey": "g"})
    assert (key.receiver, key.status, key.group_key) == ("r", "firing", "g")
    assert delivery_key(["x"]).receiver is None


def test_retrain_is_requested_only_by_firing_alerts_with_label_and_detector() -> None:
    wants = {"alertname": "Stale", "retrain": "true", "detector": "d1"}
    assert parse_notification(notification(alert(labels=wants))).alerts[0].requests_retrain
    no_detector = {"alertname": "Stale", "retrain": "true"}
    assert not parse_notification(notification(alert(labels=no_detector))).alerts[0].requests_retrain
    resolved = alert(labels=wants, status="resolved", endsAt="2024-05-01T11:00:00Z")
    assert not parse_notification(notification(resolved)).alerts[0].requests_retrain
    assert (
        not parse_notification(notification(alert(labels={**wants, "retrain": "false"})))
        .alerts[0]
        .requests_retrain
    )


def test_timestamps_are_normalised_to_utc() -> None:
    parsed = parse_timestamp("2024-05-01T12:00:00+02:00", "x")
    assert parsed == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert parsed is not None and parsed.utcoffset() is not None
    assert parse_timestamp("0001-01-01T00:00:00Z", "x") is None


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"fingerprint": "f" * 1025}, "alerts[0].fingerprint"),
        ({"labels": {"alertname": "é" * 513}}, "alerts[0].labels.alertname"),  # 1,026 bytes
        ({"labels": {"alertname": "A", "detector": "d" * 2000}}, "alerts[0].labels.detector"),
        ({"labels": {"alertname": "A", "slo": "s" * 4000}}, "alerts[0].labels.slo"),
        ({"labels": {"alertname": "A", "severity": "s" * 1025}}, "alerts[0].labels.severity"),
    ],
)
def test_indexed_values_longer_than_a_btree_row_allows_are_refused(
    overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_notification(notification(alert(**overrides)))
    assert caught.value.field_path == field
    assert "1024 allowed" in str(caught.value)


def test_long_unindexed_values_are_accepted() -> None:
    long = "x" * 4000
    parsed = parse_notification(
        notification(
            alert(
                labels={"alertname": "A", "team": long}, annotations={"summary": long}, fingerprint="f" * 1024
            ),
            groupKey=long,
            receiver=long,
        )
    )
    assert parsed.group_key == long
    assert parsed.alerts[0].labels["team"] == long


@pytest.mark.parametrize(
    ("document", "field"),
    [
        (notification(alert(labels={"alertname": "a\u0000b"})), "alerts[0].labels.alertname"),
        (notification(alert(annotations={"x\u0000": "y"})), "alerts[0].annotations.x\\u0000"),
        ({**notification(alert()), "receiver": "\u0000"}, "receiver"),
        ({**notification(alert()), "commonLabels": {"a": ["\u0000"]}}, "commonLabels.a[0]"),
    ],
)
def test_nul_characters_anywhere_are_refused_naming_the_field(document: dict[str, Any], field: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_notification(document)
    assert caught.value.field_path == field
    assert "\u0000" not in str(caught.value)
