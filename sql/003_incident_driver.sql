-- 003_incident_driver: which feature drove an anomaly incident.
-- Forward-only: a later change is a new numbered file, never an edit of this one.

-- The `driver` label of the exporter's anomaly_driver_info series that matched the alert at its
-- startsAt (docs/webhook.md, "Incident drivers"), e.g. 'level_vs_long' or 'errors:step_change'.
-- NULL when the incident is no per-series anomaly, or when Prometheus could not tell (down, slow,
-- no matching series): the webhook never holds an incident back for it. Nullable and without a
-- default, so adding it does not rewrite the table.
ALTER TABLE incidents ADD COLUMN driver text;
