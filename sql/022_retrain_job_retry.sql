-- 022_retrain_job_retry: a retrain job that fails on a transient error waits and retries.
-- Forward-only: a later change is a new numbered file, never an edit of this one.
--
-- When MLflow, Prometheus or PostgreSQL cannot be reached, the worker puts the job back in the
-- queue with `not_before` set by an exponential back-off (worker/jobs.py), instead of failing it
-- for good: an outage delays retraining and loses no job. `transient_failures` counts those
-- returns (it drives the back-off); `attempts` keeps counting only the claims a worker did not
-- survive, so waiting out an outage never uses up MAX_ATTEMPTS.
ALTER TABLE retrain_jobs
    ADD COLUMN not_before timestamptz,
    ADD COLUMN transient_failures integer NOT NULL DEFAULT 0;
