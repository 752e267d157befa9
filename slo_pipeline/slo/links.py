"""Consistency between SLO specs (`detectors:`) and the detector config (`slo:`). Pure.

Both sides may name the link: the SLO spec lists the detectors protecting it (the database is
the source the webhook uses to retrain after a burn-rate page), and a detector may name its SLO
(the exporter's `slo` label). When both are given they must agree, or anomaly alerts would be
gated on one SLO while retraining follows another.
"""

from __future__ import annotations

from collections.abc import Sequence

from slo_pipeline.settings import DetectorConfig
from slo_pipeline.slo.spec import SLO


def slo_by_detector(slos: Sequence[SLO]) -> dict[str, str]:
    """Detector name -> name of the SLO whose spec lists it."""
    return {detector: slo.name for slo in slos for detector in slo.block.detectors}


def detector_link_problems(
    slos: Sequence[SLO], detectors: Sequence[DetectorConfig], *, all_slos_known: bool = True
) -> tuple[list[str], list[str]]:
    """(errors, warnings). `all_slos_known`: `slos` is the full set, not one file of it."""
    errors: list[str] = []
    warnings: list[str] = []
    linked = slo_by_detector(slos)
    configured = {d.name: d for d in detectors}
    slo_names = {slo.name for slo in slos}
    for detector, slo_name in sorted(linked.items()):
        config = configured.get(detector)
        if config is None:
            warnings.append(f"slo {slo_name!r} detectors: {detector!r} is not in the detector config")
        elif config.slo is not None and config.slo != slo_name:
            errors.append(
                f"slo {slo_name!r} detectors: lists {detector!r}, but that detector's config says "
                f"slo: {config.slo!r}; make them agree"
            )
    for config in detectors:
        if config.slo is None or config.name in linked:
            continue
        if config.slo in slo_names:
            warnings.append(
                f"detector {config.name!r} says slo: {config.slo!r}, which does not list it under detectors"
            )
        elif all_slos_known:
            warnings.append(f"detector {config.name!r} says slo: {config.slo!r}, but no such SLO is defined")
    return errors, warnings
