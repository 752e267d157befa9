"""Webhook request handling that needs no database: auth, size limits, JSON, and the 503 path.

The storage paths are tested against real PostgreSQL under real gunicorn in
tests/integration/test_webhook*.py; here the database URL points at a port nobody listens on,
which is a real (refused) connection, not a mock.
"""

from __future__ import annotations

import io

import pytest
from flask.testing import FlaskClient

from slo_pipeline.devstack.launch import free_port
from slo_pipeline.settings import PipelineConfig, load_settings
from webhook.app import create_app
from webhook.auth import AuthFailure, bearer_token_matches, check_bearer, is_valid_token
from webhook.body import BodyTooLarge, read_limited

TOKEN = "s3cret-token"
VALID_BODY = (
    b'{"version":"4","groupKey":"g","status":"firing","receiver":"r","alerts":[{"status":"firing",'
    b'"labels":{"alertname":"A"},"annotations":{},"startsAt":"2024-05-01T10:00:00Z",'
    b'"endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"f1"}]}'
)


@pytest.fixture
def client() -> FlaskClient:
    settings = load_settings(
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/nothing_listens",
        webhook_token=TOKEN,
        max_body_bytes=len(VALID_BODY) + 10,
        pipeline=PipelineConfig(),
    )
    return create_app(settings).test_client()


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, False),
        ("", False),
        (f"Bearer {TOKEN}", True),
        (f"bearer {TOKEN}", True),
        (f"Bearer {TOKEN}x", False),
        (f"Basic {TOKEN}", False),
        (TOKEN, False),
        ("Bearer ünïcode", False),
        (f"BEARER {TOKEN}", True),  # the scheme is case-insensitive (RFC 7235)
        (f"Bearer  {TOKEN}", False),  # exactly one space (RFC 6750: "Bearer" 1*SP b64token, as sent)
        (f"Bearer {TOKEN} ", False),
        (f" Bearer {TOKEN}", False),
        (f"Bearer\t{TOKEN}", False),
        (f"Bearer {TOKEN}\n", False),
        (f"Bearertoken {TOKEN}", False),
        (f"Bearer {TOKEN[:-1]}", False),
    ],
)
def test_bearer_token_check(header: str | None, expected: bool) -> None:
    assert bearer_token_matches(header, TOKEN) is expected


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, AuthFailure.MISSING),
        ("Bearer", AuthFailure.MALFORMED),
        ("Bearer a b", AuthFailure.MALFORMED),
        ("Bearer tok%en", AuthFailure.MALFORMED),
        ("Bearer =abc", AuthFailure.MALFORMED),  # padding only at the end
        (f"Basic {TOKEN}", AuthFailure.SCHEME),
        ("Bearer abc==", AuthFailure.WRONG_TOKEN),  # well-formed b64token, wrong value
    ],
)
def test_bearer_refusal_reasons(header: str | None, reason: AuthFailure) -> None:
    assert check_bearer(header, TOKEN) is reason


def test_b64token_syntax_of_configured_tokens() -> None:
    assert is_valid_token("A-Za.z_0~9+/==")
    assert not is_valid_token("")
    assert not is_valid_token("has space")
    assert not is_valid_token("a=b")


def test_empty_configured_token_refuses_everyone() -> None:
    assert not bearer_token_matches("Bearer ", "")
    assert not bearer_token_matches("Bearer anything", "")


def test_read_limited_enforces_the_limit_while_reading() -> None:
    assert read_limited(io.BytesIO(b"x" * 10), None, 10) == b"x" * 10
    with pytest.raises(BodyTooLarge):
        read_limited(io.BytesIO(b"x" * 11), None, 10)  # no Content-Length (chunked)
    with pytest.raises(BodyTooLarge):
        read_limited(io.BytesIO(b"x" * 11), 5, 10)  # a Content-Length that lies
    with pytest.raises(BodyTooLarge):
        read_limited(io.BytesIO(b""), 11, 10)  # refused before reading anything


def test_missing_or_wrong_token_is_401(client: FlaskClient) -> None:
    assert client.post("/alerts", data=VALID_BODY).status_code == 401
    response = client.post("/alerts", data=VALID_BODY, headers=auth("wrong"))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_oversized_body_is_413(client: FlaskClient) -> None:
    response = client.post("/alerts", data=b" " * 2 + VALID_BODY + b" " * 20, headers=auth())
    assert response.status_code == 413
    assert "limit" in response.get_json()["error"]


def test_not_json_is_400_without_touching_the_database(client: FlaskClient) -> None:
    response = client.post("/alerts", data=b"{oops", headers=auth())
    assert response.status_code == 400
    assert "not valid JSON" in response.get_json()["error"]


def test_valid_notification_with_database_down_is_503(client: FlaskClient) -> None:
    response = client.post("/alerts", data=VALID_BODY, headers=auth())
    assert response.status_code == 503
    assert client.get("/healthz").status_code == 503


def test_metrics_count_requests_by_code(client: FlaskClient) -> None:
    client.post("/alerts", data=VALID_BODY)
    client.post("/alerts", data=b"{oops", headers=auth())
    text = client.get("/metrics").get_data(as_text=True)
    assert 'slo_pipeline_webhook_requests_total{code="401"} 1.0' in text
    assert 'slo_pipeline_webhook_requests_total{code="400"} 1.0' in text
    assert "slo_pipeline_webhook_request_duration_seconds_count 2.0" in text
