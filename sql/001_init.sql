-- 001_init: alert deliveries, incidents and retrain jobs.
-- Forward-only: a later change is a new numbered file, never an edit of this one
-- (slo_pipeline.db.migrate records what ran in schema_migrations).

-- Every Alertmanager notification exactly as it arrived, even one whose alerts are malformed,
-- so nothing an operator may need later is lost. Identical re-sends are deduplicated on
-- (group_key, receiver, status, sha256(body)); NULLS NOT DISTINCT so that a malformed body
-- missing those fields is still stored only once.
CREATE TABLE alert_deliveries (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    receiver     text,
    status       text,
    group_key    text,
    body_sha256  text        NOT NULL CHECK (body_sha256 ~ '^[0-9a-f]{64}$'),
    body         jsonb       NOT NULL,
    -- why the body was refused (400); NULL when it was accepted
    error        text,
    received_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT alert_deliveries_dedup UNIQUE NULLS NOT DISTINCT (group_key, receiver, status, body_sha256)
);

CREATE INDEX alert_deliveries_received_at_idx ON alert_deliveries (received_at);

-- One row per alert occurrence: Alertmanager's fingerprint identifies the label set, and a
-- re-fire of the same labels gets a new startsAt, hence a new incident.
CREATE TABLE incidents (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fingerprint             text        NOT NULL,
    starts_at               timestamptz NOT NULL,
    ends_at                 timestamptz,
    status                  text        NOT NULL CHECK (status IN ('firing', 'resolved')),
    alertname               text        NOT NULL DEFAULT '',
    labels                  jsonb       NOT NULL DEFAULT '{}'::jsonb,
    annotations             jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- copied out of the labels so dashboards and the feedback UI can filter without JSON paths
    detector                text,
    slo                     text,
    severity                text,
    generator_url           text        NOT NULL DEFAULT '',
    first_seen_delivery_id  bigint      NOT NULL REFERENCES alert_deliveries (id),
    last_seen_delivery_id   bigint      NOT NULL REFERENCES alert_deliveries (id),
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    -- operator feedback (Streamlit); true positives are excluded from training data
    feedback                text CHECK (feedback IN ('true_positive', 'false_positive')),
    feedback_by             text,
    feedback_at             timestamptz,
    feedback_note           text,
    CONSTRAINT incidents_occurrence UNIQUE (fingerprint, starts_at),
    CONSTRAINT incidents_resolved_has_end CHECK (status = 'firing' OR ends_at IS NOT NULL),
    CONSTRAINT incidents_feedback_complete CHECK (feedback IS NULL OR feedback_at IS NOT NULL)
);

CREATE INDEX incidents_starts_at_idx ON incidents (starts_at DESC);
CREATE INDEX incidents_firing_idx ON incidents (alertname) WHERE status = 'firing';
CREATE INDEX incidents_detector_idx ON incidents (detector, starts_at DESC) WHERE detector IS NOT NULL;
CREATE INDEX incidents_slo_idx ON incidents (slo, starts_at DESC) WHERE slo IS NOT NULL;
CREATE INDEX incidents_feedback_idx ON incidents (feedback) WHERE feedback IS NOT NULL;

-- Retraining queue. Workers claim with FOR UPDATE SKIP LOCKED and hold a lease they keep
-- extending; a running job whose lease expired belongs to a dead worker and is claimable again.
CREATE TABLE retrain_jobs (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    detector          text        NOT NULL,
    status            text        NOT NULL DEFAULT 'queued'
                                  CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    reason            text        NOT NULL DEFAULT '',
    incident_id       bigint      REFERENCES incidents (id),
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    lease_expires_at  timestamptz,
    worker_id         text,
    attempts          integer     NOT NULL DEFAULT 0,
    run_id            text,
    model_version     text,
    decision          text CHECK (decision IN ('promoted', 'rejected')),
    decision_reasons  jsonb,
    error             text,
    CONSTRAINT retrain_jobs_running_has_lease
        CHECK (status <> 'running' OR (lease_expires_at IS NOT NULL AND worker_id IS NOT NULL))
);

-- At most one queued-or-running job per detector: a storm of alerts enqueues one retrain.
CREATE UNIQUE INDEX retrain_jobs_one_active_per_detector
    ON retrain_jobs (detector) WHERE status IN ('queued', 'running');
-- What workers scan when they look for work.
CREATE INDEX retrain_jobs_claimable_idx ON retrain_jobs (created_at) WHERE status IN ('queued', 'running');
-- The cooldown check and the history view.
CREATE INDEX retrain_jobs_detector_created_idx ON retrain_jobs (detector, created_at DESC);
