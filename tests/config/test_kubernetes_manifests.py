"""deploy/ (kustomize): every manifest, and every ConfigMap the kustomization generates, is valid
against the Kubernetes schemas (kubernetes-validate, offline, strict: unknown fields fail), and
the manifests keep their promises: Secrets referenced and never inlined, probes on the serving
workloads, resource requests everywhere, the exporter's replicas equal to its shard count, and the
bundled config copies equal to the repository's files.

The kustomization uses resources, a namespace, labels, literal and file ConfigMap generators
without name hashes and an image tag only; the small renderer below covers exactly those (it
fails on any other kustomize feature rather than pass it unchecked).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.fixtures.paths import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
KUBERNETES_VERSION = "1.30.0"
SUPPORTED_KEYS = {
    "apiVersion",
    "kind",
    "namespace",
    "labels",
    "resources",
    "configMapGenerator",
    "generatorOptions",
    "images",
}
# Created by the operator (README "Run on Kubernetes"); never part of deploy/.
EXTERNAL_SECRETS = {"slo-pipeline-secrets", "prometheus-credentials"}
SECRET_LOOKING = ("PASSWORD", "TOKEN", "DATABASE_URL", "SECRET")
SERVING = {"slo-exporter", "slo-webhook", "slo-ui", "slo-worker", "slo-rules-sync", "slo-lake-sync"}


def kustomization() -> dict[str, Any]:
    document = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text(encoding="utf-8"))
    unsupported = set(document) - SUPPORTED_KEYS
    assert not unsupported, f"extend this test's renderer for {sorted(unsupported)}"
    assert document["generatorOptions"] == {"disableNameSuffixHash": True}
    return document


def generated_config_maps(document: dict[str, Any]) -> list[dict[str, Any]]:
    maps = []
    for generator in document["configMapGenerator"]:
        assert set(generator) <= {"name", "files", "literals"}, generator
        data: dict[str, str] = {}
        for path in generator.get("files", []):
            data[Path(path).name] = (DEPLOY / path).read_text(encoding="utf-8")
        for literal in generator.get("literals", []):
            name, _, value = literal.partition("=")
            data[name] = value
        maps.append(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]}, "data": data}
        )
    return maps


def rendered() -> list[dict[str, Any]]:
    document = kustomization()
    objects = []
    for resource in document["resources"]:
        objects.extend(yaml.safe_load_all((DEPLOY / resource).read_text(encoding="utf-8")))
    objects.extend(generated_config_maps(document))
    for obj in objects:
        obj["metadata"]["namespace"] = document["namespace"]
    return objects


def workloads() -> Iterator[dict[str, Any]]:
    for obj in rendered():
        if obj["kind"] in {"Deployment", "StatefulSet", "Job"}:
            yield obj


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    return workload["spec"]["template"]["spec"]["containers"]


@pytest.mark.parametrize("obj", rendered(), ids=lambda o: f"{o['kind']}/{o['metadata']['name']}")
def test_every_object_is_valid_against_the_kubernetes_schema(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_broken_manifest() -> None:
    broken = next(w for w in workloads() if w["kind"] == "StatefulSet")
    broken["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    unknown = next(w for w in workloads() if w["kind"] == "Deployment")
    containers(unknown)[0]["livenessProbes"] = []  # a typo strict mode must catch
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(unknown, KUBERNETES_VERSION, strict=True)


def test_every_manifest_file_is_listed_in_the_kustomization() -> None:
    listed = set(kustomization()["resources"])
    on_disk = {path.name for path in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert on_disk == listed


def test_secrets_are_referenced_never_inlined() -> None:
    objects = rendered()
    assert not [o for o in objects if o["kind"] == "Secret"]
    referenced = set()
    for workload in workloads():
        spec = workload["spec"]["template"]["spec"]
        for container in containers(workload):
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    referenced.add(source["secretRef"]["name"])
            for variable in container.get("env", []):
                reference = variable.get("valueFrom", {}).get("secretKeyRef")
                if reference:
                    referenced.add(reference["name"])
                elif any(word in variable["name"] for word in SECRET_LOOKING):
                    pytest.fail(f"{workload['metadata']['name']}: {variable['name']} is inlined")
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                referenced.add(volume["secret"]["secretName"])
    assert referenced == EXTERNAL_SECRETS
    for config_map in (o for o in objects if o["kind"] == "ConfigMap"):
        for key in config_map["data"]:
            assert not any(word in key for word in SECRET_LOOKING), (config_map["metadata"]["name"], key)


def test_config_maps_used_by_workloads_are_generated() -> None:
    generated = {g["name"] for g in kustomization()["configMapGenerator"]}
    used = set()
    for workload in workloads():
        for container in containers(workload):
            used |= {s["configMapRef"]["name"] for s in container.get("envFrom", []) if "configMapRef" in s}
        used |= {
            v["configMap"]["name"]
            for v in workload["spec"]["template"]["spec"].get("volumes", [])
            if "configMap" in v
        }
    assert used <= generated and "slo-pipeline-config" in used


def test_serving_workloads_have_probes_on_their_own_ports_and_everything_has_requests() -> None:
    names = set()
    for workload in workloads():
        name = workload["metadata"]["name"]
        names.add(name)
        for container in containers(workload):
            requests = container["resources"]["requests"]
            assert {"cpu", "memory"} <= set(requests), name
            assert "memory" in container["resources"]["limits"], name
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
            if name in SERVING:
                ports = {port["name"] for port in container["ports"]}
                for probe in ("readinessProbe", "livenessProbe"):
                    assert container[probe]["httpGet"]["port"] in ports, (name, probe)
    assert names >= SERVING and {"slo-worker", "slo-rules-sync", "slo-migrate"} <= names


def test_the_exporter_runs_as_many_replicas_as_shards() -> None:
    (exporter,) = [w for w in workloads() if w["kind"] == "StatefulSet"]
    literals = dict(
        literal.partition("=")[::2]
        for generator in kustomization()["configMapGenerator"]
        for literal in generator.get("literals", [])
    )
    assert exporter["spec"]["replicas"] == int(literals["SLO_PIPELINE_SHARDS"])
    assert "SLO_PIPELINE_SHARD_INDEX" not in literals  # each pod takes its ordinal
    assert exporter["spec"]["serviceName"] == "slo-exporter"


@pytest.mark.parametrize(
    ("copy", "original"),
    [
        ("config/slo-pipeline.yml", "slo-pipeline.yml"),
        ("config/rules/anomaly.rules.yml", "rules/anomaly.rules.yml"),
        ("config/rules/anomaly-slo-gating.rules.yml", "rules/anomaly-slo-gating.rules.yml"),
    ],
)
def test_bundled_config_equals_the_repository_files(copy: str, original: str) -> None:
    assert (DEPLOY / copy).read_bytes() == (REPO_ROOT / original).read_bytes(), f"cp {original} deploy/{copy}"
