"""Turn anomaly scores into alarms exactly as the shipped Prometheus alert rule does.

The rule is `anomaly_score > 1` with `for: F*step` and `keep_firing_for: K*step`, evaluated once
per step. Prometheus (rules/alerting.go, 2.42+) then behaves like this per series:

- the first true evaluation creates a *pending* alert (ActiveAt = now); a false evaluation while
  pending deletes it; the alert *fires* at the evaluation where now - ActiveAt >= F*step, i.e. on
  the (F+1)-th consecutive true sample (F = 0 fires on the first one);
- a firing alert keeps firing while true; after it turns false it keeps firing while
  now - KeepFiringSince < K*step, and a true sample in between resets that clock; it resolves on
  the (K+1)-th consecutive false sample (K = 0 resolves on the first);
- an unscorable sample (NaN: the exporter drops the series) is a false evaluation.

An *onset* is a pending -> firing transition: the one notification that opens an incident. The
backtest scores onsets, so "one incident, one alarm" is measured with the rule as shipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AlertRule:
    for_steps: int = 2
    keep_firing_steps: int = 15
    threshold: float = 1.0

    def __post_init__(self) -> None:
        if self.for_steps < 0 or self.keep_firing_steps < 0:
            raise ValueError(f"for/keep_firing steps must be >= 0, got {self}")

    @classmethod
    def from_durations(
        cls,
        for_seconds: float,
        keep_firing_seconds: float,
        step_seconds: float,
        evaluation_seconds: float | None = None,
    ) -> AlertRule:
        """The rule in samples of `step_seconds` when Prometheus evaluates every
        `evaluation_seconds` (default: once per step) and each score is held for a whole step.

        A run of r exceeding samples keeps the condition true for r * step; it fires once an
        evaluation at ActiveAt + for is still true, i.e. r * step >= for + evaluation, so
        F + 1 = ceil((for + evaluation) / step); the same argument gives K for keep_firing_for.
        With evaluation == step this is simply F = for / step and K = keep_firing_for / step.
        """
        evaluation = step_seconds if evaluation_seconds is None else evaluation_seconds
        if step_seconds <= 0 or evaluation <= 0:
            raise ValueError(
                f"step and evaluation interval must be positive, got {step_seconds}, {evaluation}"
            )
        # The epsilon keeps exact multiples (120 s + 60 s over 60 s steps = 3) from rounding up.
        runs = [
            math.ceil((seconds + evaluation) / step_seconds - 1e-9)
            for seconds in (for_seconds, keep_firing_seconds)
        ]
        return cls(for_steps=max(0, runs[0] - 1), keep_firing_steps=max(0, runs[1] - 1))

    def prometheus_durations(self, step_seconds: int) -> dict[str, str]:
        """The `for:` / `keep_firing_for:` values that make the rule match this simulation."""
        return {
            "for": f"{self.for_steps * step_seconds}s",
            "keep_firing_for": f"{self.keep_firing_steps * step_seconds}s",
        }


def simulate_alerts(scores: np.ndarray, rule: AlertRule) -> tuple[np.ndarray, np.ndarray]:
    """`(firing, onset)`, both bool and shaped like `scores[T]` or `scores[T, N]` (time first)."""
    scores = np.asarray(scores, dtype=np.float64)
    squeeze = scores.ndim == 1
    matrix = scores[:, None] if squeeze else scores
    if matrix.ndim != 2:
        raise ValueError(f"scores must be [time] or [time, series], got shape {scores.shape}")
    # NaN > 1 is False: an unscorable sample is a false evaluation, as an absent series is.
    with np.errstate(invalid="ignore"):
        condition = matrix > rule.threshold
    n = matrix.shape[1]
    true_run = np.zeros(n, dtype=np.int64)  # consecutive true samples while not firing
    false_run = np.zeros(n, dtype=np.int64)  # consecutive false samples while firing
    is_firing = np.zeros(n, dtype=bool)
    firing = np.zeros(matrix.shape, dtype=bool)
    onset = np.zeros(matrix.shape, dtype=bool)
    for t in range(matrix.shape[0]):
        true_now = condition[t]
        # Pending bookkeeping: a false sample deletes a pending alert.
        true_run = np.where(true_now & ~is_firing, true_run + 1, 0)
        starts = ~is_firing & (true_run >= rule.for_steps + 1)
        # Firing bookkeeping: resolve on the (K+1)-th consecutive false sample.
        false_run = np.where(is_firing & ~true_now, false_run + 1, 0)
        resolves = is_firing & (false_run > rule.keep_firing_steps)
        is_firing = (is_firing & ~resolves) | starts
        false_run[resolves] = 0
        true_run[starts] = 0
        firing[t] = is_firing
        onset[t] = starts
    if squeeze:
        return firing[:, 0], onset[:, 0]
    return firing, onset
