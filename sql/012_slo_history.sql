-- 012_slo_history: each SLO's compliance over time, kept beyond Prometheus' retention.
-- Forward-only: a later change is a new numbered file, never an edit of this one.

-- Prometheus keeps 15 days by default while SLO periods are 28 or 30 days, so the worker copies
-- what the SLO recording rules say into PostgreSQL at every scheduled instant (multiples of
-- SLO_PIPELINE_SLO_HISTORY_INTERVAL). One row per SLO and instant: re-running a pass inserts
-- nothing twice. No foreign key to slos, so the history of a deleted SLO stays.
CREATE TABLE slo_snapshots (
    slo_name              text             NOT NULL,
    taken_at              timestamptz      NOT NULL,
    interval_seconds      double precision NOT NULL CHECK (interval_seconds > 0),
    -- the spec in force when the snapshot was taken (an edit mid-period shows in the report)
    objective             double precision NOT NULL CHECK (objective > 0 AND objective <= 100),
    time_period           text             NOT NULL,
    -- false: Prometheus held none of the SLO's recording rules at that instant (no evidence)
    recorded              boolean          NOT NULL,
    -- rolling values at `taken_at`, as the recording rules give them
    period_error_ratio    double precision,
    budget_remaining      double precision,
    burn_rates            jsonb            NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(burn_rates) = 'object'),
    -- the interval (taken_at - interval_seconds, taken_at] on its own: error ratio and its
    -- weight (events for an events SLI, covered seconds for a raw one), so any calendar period
    -- can be summed up from its intervals
    interval_error_ratio  double precision,
    interval_weight       double precision CHECK (interval_weight >= 0),
    pages                 integer          NOT NULL DEFAULT 0 CHECK (pages >= 0),
    tickets               integer          NOT NULL DEFAULT 0 CHECK (tickets >= 0),
    created_at            timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (slo_name, taken_at)
);

-- Periods in which an SLO's burn-rate alert condition held (any tier of that severity), with
-- the incidents linked to them (same SLO, or a detector the SLO lists, overlapping the period).
-- A period still open at a pass ends at that pass and is extended by the next one.
CREATE TABLE slo_breaches (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slo_name      text        NOT NULL,
    severity      text        NOT NULL CHECK (severity IN ('page', 'ticket')),
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz NOT NULL,
    incident_ids  bigint[]    NOT NULL DEFAULT '{}',
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT slo_breaches_ordered CHECK (ends_at >= starts_at)
);

CREATE INDEX slo_breaches_slo_time_idx ON slo_breaches (slo_name, severity, starts_at);
