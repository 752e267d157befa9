"""How exporter replicas split the detectors: no overlap, no gap, and a replica that cannot tell
its shard refuses to start."""

from __future__ import annotations

import pytest

from exporter.service import ExporterService
from exporter.sharding import (
    UNSHARDED,
    Shard,
    assignment,
    hostname_ordinal,
    owned_detectors,
    parse_shard,
    resolve_shard,
)
from slo_pipeline.settings import ConfigError, DetectorConfig, PipelineConfig, load_settings

DETECTORS = [DetectorConfig(name=f"detector_{letter}", query="up") for letter in "qwertyuiopas"]


@pytest.mark.parametrize("count", [1, 2, 3, 5, 12, 20])
def test_shards_are_disjoint_and_cover_every_detector(count: int) -> None:
    shares = [owned_detectors(DETECTORS, Shard(index, count)) for index in range(count)]
    names = [d.name for share in shares for d in share]
    assert sorted(names) == sorted(d.name for d in DETECTORS)
    assert len(names) == len(set(names))
    sizes = [len(share) for share in shares]
    assert max(sizes) - min(sizes) <= 1  # dealt round-robin: as even as whole detectors allow


def test_the_assignment_does_not_depend_on_configuration_order() -> None:
    assert assignment([d.name for d in DETECTORS], 3) == assignment([d.name for d in reversed(DETECTORS)], 3)


def test_a_shard_keeps_the_configuration_order() -> None:
    share = owned_detectors(DETECTORS, Shard(0, 2))
    positions = [DETECTORS.index(d) for d in share]
    assert positions == sorted(positions)


@pytest.mark.parametrize(
    ("hostname", "ordinal"),
    [
        ("slo-exporter-2", 2),
        ("slo-exporter-0.slo-exporter.monitoring.svc.cluster.local", 0),
        ("exporter-12", 12),
        ("laptop", None),
        ("host-a", None),
    ],
)
def test_the_statefulset_ordinal_comes_from_the_hostname(hostname: str, ordinal: int | None) -> None:
    assert hostname_ordinal(hostname) == ordinal


def test_the_flag_wins_then_the_index_then_the_hostname() -> None:
    assert resolve_shard(3, 1, "slo-exporter-2", "0/4") == Shard(0, 4)
    assert resolve_shard(3, 1, "slo-exporter-2") == Shard(1, 3)
    assert resolve_shard(3, None, "slo-exporter-2") == Shard(2, 3)
    assert resolve_shard(1, None, "laptop") == UNSHARDED


@pytest.mark.parametrize(
    ("count", "index", "hostname", "flag", "message"),
    [
        (3, None, "laptop", None, "shard is unknown"),
        (3, None, "slo-exporter-3", None, "scale the StatefulSet"),
        (3, 5, "laptop", None, "scale the StatefulSet"),
        (1, None, "laptop", "3/3", "does not exist"),
        (1, None, "laptop", "1/0", "at least 1"),
        (1, None, "laptop", "one of three", "I/N"),
    ],
)
def test_a_replica_that_cannot_tell_its_shard_refuses_to_start(
    count: int, index: int | None, hostname: str, flag: str | None, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_shard(count, index, hostname, flag)


def test_parse_shard() -> None:
    assert parse_shard(" 2 / 5 ") == Shard(2, 5)


def test_every_replica_publishes_its_shard_and_the_whole_assignment() -> None:
    settings = load_settings(pipeline=PipelineConfig(detectors=DETECTORS[:4]))
    service = ExporterService(settings, model_source=object(), series_source=object(), shard=Shard(1, 3))  # type: ignore[arg-type]
    page = service.page.body().decode()
    assert 'anomaly_exporter_shard_info{shard="1",shards="3"} 1.0' in page
    table = assignment([d.name for d in DETECTORS[:4]], 3)
    for name, owner in table.items():
        assert f'anomaly_exporter_detector_shard_info{{detector="{name}",shard="{owner}"}} 1.0' in page
    assert [d.name for d in service.detectors] == [n for n, owner in table.items() if owner == 1]
    assert f'anomaly_exporter_up{{detector="{service.detectors[0].name}"}}' in page
    others = [n for n, owner in table.items() if owner != 1]
    assert all(f'anomaly_exporter_up{{detector="{name}"}}' not in page for name in others)
