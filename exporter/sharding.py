"""Which detectors this exporter replica scores, when N replicas split the work (docs/scaling.md).

The unit of work is a detector: its query is fetched, cached and scored by exactly one replica,
so each replica's fetch, memory and CPU follow the detectors it owns. (Hashing series labels
instead would make every replica fetch every series and throw most away.) Detectors are sorted
by name and dealt round-robin: shard `i` of `N` owns the detectors at positions i, i+N, ... Every
replica computes the same table from the same pipeline YAML and publishes it, so an alert can name
the detectors whose shard no live replica serves.

A detector too large for one replica is split by a label partition in its query: two detectors
(`..._a_m` with `{service=~"[a-m].*"}`, `..._n_z` with the rest), each trained and scored on its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from slo_pipeline.settings import ConfigError, DetectorConfig

_SHARD_PATTERN = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
# A StatefulSet pod is `<statefulset name>-<ordinal>`; its hostname is the pod name.
_ORDINAL_PATTERN = re.compile(r"-(\d+)$")


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ConfigError(f"the number of exporter shards must be at least 1, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ConfigError(
                f"exporter shard {self.index} does not exist among {self.count} (0..{self.count - 1})"
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


UNSHARDED = Shard(0, 1)


def parse_shard(text: str) -> Shard:
    """`"1/3"` -> shard 1 of 3 (`--shard`)."""
    match = _SHARD_PATTERN.match(text)
    if not match:
        raise ConfigError(f"--shard must look like I/N (e.g. 0/3), got {text!r}")
    return Shard(int(match.group(1)), int(match.group(2)))


def hostname_ordinal(hostname: str) -> int | None:
    """The StatefulSet ordinal at the end of a pod's hostname (`slo-exporter-2` -> 2)."""
    match = _ORDINAL_PATTERN.search(hostname.split(".", 1)[0])
    return int(match.group(1)) if match else None


def resolve_shard(count: int, index: int | None, hostname: str, flag: str | None = None) -> Shard:
    """`--shard I/N` first, then `SLO_PIPELINE_SHARD_INDEX`/`SLO_PIPELINE_SHARDS`, then the ordinal
    at the end of the host name. A replica that cannot tell its shard refuses to start: scoring
    nothing (or everything twice) without saying so is worse than a crash loop."""
    if flag:
        return parse_shard(flag)
    if count == 1:
        return UNSHARDED
    if index is None:
        index = hostname_ordinal(hostname)
        if index is None:
            raise ConfigError(
                f"SLO_PIPELINE_SHARDS={count} but this replica's shard is unknown: set "
                f"SLO_PIPELINE_SHARD_INDEX or run it as a StatefulSet pod (host name {hostname!r} "
                "does not end in -<ordinal>)"
            )
    if index >= count:
        raise ConfigError(
            f"this replica is shard {index} but SLO_PIPELINE_SHARDS={count}: scale the StatefulSet "
            "and SLO_PIPELINE_SHARDS together"
        )
    return Shard(index, count)


def assignment(detector_names: Iterable[str], count: int) -> dict[str, int]:
    """Detector name -> the shard that owns it: sorted names dealt round-robin."""
    return {name: position % count for position, name in enumerate(sorted(set(detector_names)))}


def owned_detectors(detectors: Sequence[DetectorConfig], shard: Shard) -> list[DetectorConfig]:
    """The detectors `shard` scores, in configuration order."""
    owner = assignment((d.name for d in detectors), shard.count)
    return [d for d in detectors if owner[d.name] == shard.index]
