"""Credentials never reach logs, errors or pages (slo_pipeline/core/redact.py, pure)."""

from __future__ import annotations

import pytest

from slo_pipeline.core.redact import redact_credentials


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://alice:s3cret@mlflow:5000", "http://***@mlflow:5000"),
        (
            "API request to https://u:p%40ss@host/api/2.0/x failed",
            "API request to https://***@host/api/2.0/x failed",
        ),
        ("postgresql+psycopg2://slo:pw@postgres:5432/db", "postgresql+psycopg2://***@postgres:5432/db"),
        ("at 'http://token@h:1/' and http://h:2/", "at 'http://***@h:1/' and http://h:2/"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
        ("mail alice@example.com", "mail alice@example.com"),
    ],
)
def test_userinfo_of_every_url_is_replaced(text: str, expected: str) -> None:
    assert redact_credentials(text) == expected
