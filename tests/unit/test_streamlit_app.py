"""The operator app without any service: configuration errors and the sign-in gate.

Pages behind the sign-in need a database to sign in against; they are covered by
tests/integration/test_streamlit_signin.py and the other test_streamlit_* files.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "streamlit_app" / "app.py")


def test_invalid_configuration_is_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "pipeline.yml"
    config.write_text("detectors:\n  - name: Not-Snake\n    query: up\n")
    monkeypatch.setenv("SLO_PIPELINE_CONFIG", str(config))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert any("configuration cannot be used" in e.value and "Not-Snake" in e.value for e in at.error)


def test_proxy_sign_in_without_a_proxy_shows_no_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """AppTest has no TCP peer at all, so the header cannot be trusted: refused, nothing shown."""
    monkeypatch.setenv("SLO_PIPELINE_CONFIG", str(tmp_path / "absent.yml"))
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:9/slo")
    monkeypatch.setenv("SLO_PIPELINE_UI_AUTH", "proxy")
    monkeypatch.setenv("SLO_PIPELINE_UI_TRUSTED_PROXIES", "127.0.0.1")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert [h.value for h in at.header] == ["Not signed in"]
    assert any("authenticating proxy" in e.value for e in at.error)
    assert not at.sidebar.radio
