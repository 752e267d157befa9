"""Generate days of the simulated service's metrics as OpenMetrics for promtool backfilling."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from slo_pipeline.devstack.simulator.exposition import render_openmetrics_history
from slo_pipeline.devstack.simulator.model import Incident, IntervalSample, sample_intervals

# The labels Prometheus would attach when scraping the compose deployment's simulator, so
# backfilled history and live scrapes of `job="demo-service"` form one continuous series set.
DEFAULT_HISTORY_LABELS = {"job": "demo-service", "instance": "simulator:8000"}


# What `write_history` reports to `on_stage`, in order.
STAGES = ("sampled", "rendered", "written")


def write_history(
    path: Path,
    *,
    start: float,
    end: float,
    step_seconds: float = 15.0,
    seed: int = 0,
    incidents: Sequence[Incident] = (),
    labels: Mapping[str, str] | None = None,
    written_until: float | None = None,
    written_after: float | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> None:
    """Write the service's counters from `start` to `end` (unix seconds) as OpenMetrics.

    Counters start at 0 at `start` and are sampled every `step_seconds`; the same seed gives the
    same file. `labels` (default: job/instance of the compose simulator) go on every series.
    Samples after `written_until` are drawn but not written: the file is then a prefix of the
    history from `start` to `end`, with exactly that history's random draws (the draws depend on
    the number of steps, so a shorter `end` would be a different realisation). With
    `written_after`, samples at or before it are left out too: a later part of the same history,
    continuing one backfilled earlier (its counters restart from 0, which PromQL reads as a reset).
    `on_stage(name)` hears each stage as it finishes (STAGES), e.g. for a progress bar.
    """
    report = on_stage or (lambda _stage: None)
    if not end > start:
        raise ValueError(f"history end ({end}) must be after its start ({start})")
    if step_seconds <= 0:
        raise ValueError(f"step_seconds must be > 0, got {step_seconds}")
    edges = np.arange(start, end + step_seconds / 2, step_seconds, dtype=float)
    if len(edges) < 2:
        raise ValueError(f"history from {start} to {end} is shorter than one step of {step_seconds}s")
    sample = sample_intervals(edges[:-1], edges[1:], incidents=incidents, rng=np.random.default_rng(seed))
    stamps = edges[1:]
    if written_until is not None:
        kept = int(np.searchsorted(stamps, written_until, side="right"))
        if kept == 0:
            raise ValueError(f"no sample of the history from {start} is at or before {written_until}")
        stamps, sample = stamps[:kept], _first_steps(sample, kept)
    if written_after is not None:
        skipped = int(np.searchsorted(stamps, written_after, side="right"))
        if skipped == len(stamps):
            raise ValueError(f"no sample of the history from {start} is after {written_after}")
        stamps, sample = stamps[skipped:], _steps_from(sample, skipped)
    report("sampled")
    text = render_openmetrics_history(
        stamps, sample, extra_labels=DEFAULT_HISTORY_LABELS if labels is None else labels
    )
    report("rendered")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    report("written")


def _steps_from(sample: IntervalSample, first: int) -> IntervalSample:
    """The intervals from index `first` on (time is the last axis of every field)."""
    return IntervalSample(
        requests=sample.requests[..., first:],
        bucket_counts=sample.bucket_counts[..., first:],
        duration_sum=sample.duration_sum[..., first:],
    )


def _first_steps(sample: IntervalSample, steps: int) -> IntervalSample:
    """The first `steps` intervals (time is the last axis of every field)."""
    return IntervalSample(
        requests=sample.requests[..., :steps],
        bucket_counts=sample.bucket_counts[..., :steps],
        duration_sum=sample.duration_sum[..., :steps],
    )
