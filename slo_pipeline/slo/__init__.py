"""SLOs: specs, rule generation, storage, and SLO-based model validation.

- `spec`: Sloth prometheus/v1 specs (+ time_period, min_events, detectors) -> validated `SLO`s. Pure.
- `burnrate`, `rulegen`: SLOs -> Prometheus rule-file text (Sloth's names and labels). Pure.
- `promcheck`: PromQL and rule files checked by promtool, errors mapped back to SLO fields.
- `render`: staged, promtool-checked, atomic install of rule files; debounced Prometheus reload.
- `store`: `slos` / `slo_revisions` in PostgreSQL (the audit trail is a trigger, sql/002_slos.sql).
- `links`: consistency between SLO specs and the detector config. Pure.
- `validation`: may a candidate model replace the champion, judged against the SLOs. Pure.
- `sync`: the `rules sync` loop that re-renders and reloads when stored SLOs change.
- `commands`: `slo apply|export|validate|history` and `rules render|sync`.
"""
