"""Multi-window, multi-burn-rate alert tiers (Google SRE workbook, ch. 5). Pure.

A tier fires when the error ratio over BOTH its windows exceeds `factor * error_budget`; the long
window proves the burn is significant, the short one that it is still happening (so the alert
resolves minutes after a fix instead of hours). The factor is the burn rate that spends
`budget_percent` of the period's budget within the long window:

    factor = budget_percent / 100 * period / long_window

For 30 days this gives the workbook's 14.4 / 6 / 3 / 1; other periods scale (Sloth does the same
for 28d). One deliberate difference: a factor is never below 1. At a burn rate of 1 or less the
budget lasts the whole period, so alerting on it (0.93x for 28d, 0.23x for 7d) would be noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

# PromQL durations of the windows the rules record, shortest first, in seconds.
WINDOW_SECONDS: dict[str, int] = {
    "5m": 300,
    "30m": 1800,
    "1h": 3600,
    "2h": 7200,
    "6h": 21600,
    "1d": 86400,
    "3d": 259200,
}
MIN_FACTOR = Decimal(1)


@dataclass(frozen=True)
class BurnTier:
    burn_tier: str  # label value Alertmanager inhibits on: fast > medium > slow > slowest
    severity: str  # page | ticket
    short: str
    long: str
    budget_percent: Decimal  # share of the period's budget spent within `long` at `factor`

    def factor(self, period_days: int) -> Decimal:
        period_seconds = Decimal(period_days * 86400)
        raw = self.budget_percent / 100 * period_seconds / WINDOW_SECONDS[self.long]
        # Four decimals is far below any meaningful difference in burn rate and keeps rules readable.
        return max(MIN_FACTOR, raw).quantize(Decimal("0.0001")).normalize()


TIERS: tuple[BurnTier, ...] = (
    BurnTier("fast", "page", "5m", "1h", Decimal(2)),
    BurnTier("medium", "page", "30m", "6h", Decimal(5)),
    BurnTier("slow", "ticket", "2h", "1d", Decimal(10)),
    BurnTier("slowest", "ticket", "6h", "3d", Decimal(10)),
)


def factors_table(period_days: int) -> list[tuple[BurnTier, Decimal]]:
    """(tier, factor) for every tier of an SLO period, fastest first (used by docs and tests)."""
    return [(tier, tier.factor(period_days)) for tier in TIERS]
