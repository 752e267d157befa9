"""TLS settings against a real Prometheus 2.42 serving HTTPS and requiring a client certificate
(`--web.config.file`): the CA file, the client certificate and key, and skip-verify each do what
they say, and each missing piece fails as a clear query error.

The CA, the server certificate (for 127.0.0.1) and the client certificate are made per test run
with `cryptography` (installed with MLflow).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import certifi
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from slo_pipeline.adapters.prometheus import PrometheusQueryError, fetch_range
from slo_pipeline.adapters.prometheus_connection import prometheus_session
from slo_pipeline.devstack import launch
from slo_pipeline.settings import PrometheusConnection
from tests.fixtures.waiting import wait_until, watching

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    usage: ExtendedKeyUsageOID | None = None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, signing_key = issuer if issuer else (name, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate("slo-pipeline test CA", ca_key, None, ca=True)
    issuer = (ca_cert.subject, ca_key)
    files = {}
    for role, usage in (
        ("server", ExtendedKeyUsageOID.SERVER_AUTH),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(f"slo-pipeline test {role}", key, issuer, usage=usage)
        (folder / f"{role}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (folder / f"{role}.key").write_bytes(_key_pem(key))
        files[role] = (folder / f"{role}.pem", folder / f"{role}.key")
    (folder / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return Pki(folder / "ca.pem", *files["server"], *files["client"])


@pytest.fixture(scope="module")
def tls_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Pki]]:
    folder = tmp_path_factory.mktemp("prometheus-tls")
    pki = make_pki(folder / "pki")
    web_config = folder / "web.yml"
    web_config.write_text(
        "tls_server_config:\n"
        f"  cert_file: {pki.server_cert}\n"
        f"  key_file: {pki.server_key}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        f"  client_ca_file: {pki.ca}\n",
        encoding="utf-8",
    )
    config = launch.write_prometheus_config(
        folder / "prometheus.yml", scrape_targets={}, alertmanager_url=None, rule_files=[]
    )
    binary = launch._require_binary(launch.PROMETHEUS_BINARY)

    def argv(port: int) -> list[str]:
        return [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.config.file={web_config}",
        ]

    port = launch.free_port()
    process = launch.start_service(
        "prometheus-tls", argv, port=port, log_path=folder / "prometheus.log", ready_path=None
    )
    url = f"https://127.0.0.1:{port}"
    try:
        ready = PrometheusConnection(
            url=url, ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key
        )

        def ready_status() -> int:
            with prometheus_session(ready) as session:
                return session.get(f"{url}/-/ready", timeout=2).status_code

        wait_until(
            ready_status,
            timeout=30,
            describe="HTTPS Prometheus to be ready",
            until=lambda status: status == 200,
            ignoring=(requests.RequestException,),
            **watching(process),
        )
        yield url, pki
    finally:
        process.stop()


def query(connection: PrometheusConnection) -> int:
    end = float(int(time.time()) // 60 * 60)
    return fetch_range(connection, "vector(1)", start=end - 300, end=end, step_seconds=60).n_series


def test_ca_file_and_client_certificate_reach_a_prometheus_that_requires_them(
    tls_prometheus: tuple[str, Pki], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, pki = tls_prometheus
    # Many images set this; plain requests would then ignore the configured CA file.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    connection = PrometheusConnection(
        url=url, ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key
    )
    assert query(connection) == 1
    skip_verify = PrometheusConnection(
        url=url, tls_insecure_skip_verify=True, cert_file=pki.client_cert, key_file=pki.client_key
    )
    assert query(skip_verify) == 1


def test_each_missing_piece_is_a_clear_query_error(tls_prometheus: tuple[str, Pki]) -> None:
    url, pki = tls_prometheus
    unknown_ca = PrometheusConnection(url=url, cert_file=pki.client_cert, key_file=pki.client_key)
    with pytest.raises(PrometheusQueryError, match="CERTIFICATE_VERIFY_FAILED"):
        query(unknown_ca)
    no_client_certificate = PrometheusConnection(url=url, ca_file=pki.ca)
    with pytest.raises(PrometheusQueryError, match=url):
        query(no_client_certificate)
