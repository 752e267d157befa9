-- 004_incident_driver_lookup: what the driver lookup of an incident last gave, so the worker can
-- retry the ones that failed (webhook/driver_retry.py, docs/webhook.md "Incident drivers").
-- Forward-only: a later change is a new numbered file, never an edit of this one.

-- 'found', 'no_match' (Prometheus answered; no series matched, so asking again would not help)
-- or 'failed' (Prometheus down, slow or erroring). NULL: never recorded, because the incident
-- predates this column, carries no detector, or the webhook could not write the outcome.
ALTER TABLE incidents ADD COLUMN driver_lookup text
    CHECK (driver_lookup IN ('found', 'no_match', 'failed'));
-- Lookups that reached Prometheus (or ran out of budget asking it); a constant default, which
-- PostgreSQL 11+ adds without rewriting the table.
ALTER TABLE incidents ADD COLUMN driver_lookup_attempts integer NOT NULL DEFAULT 0;
-- When the last of them ran (database clock): retries back off from it.
ALTER TABLE incidents ADD COLUMN driver_lookup_at timestamptz;

-- The retry pass reads the newest incidents still missing a driver.
CREATE INDEX incidents_driver_missing_idx ON incidents (starts_at DESC)
    WHERE driver IS NULL AND detector IS NOT NULL;
