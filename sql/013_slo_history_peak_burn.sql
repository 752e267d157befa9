-- 013_slo_history_peak_burn: the highest burn rate per window pair within each snapshot's interval.
-- Forward-only: a later change is a new numbered file, never an edit of this one.

-- `burn_rates` is the burn at the scheduled instant only, so a burst between two instants left no
-- trace in it; the peak within (taken_at - interval_seconds, taken_at], read at one-minute
-- resolution, is what a month's "worst burn" is made of. Rows from before this column: '{}'.
ALTER TABLE slo_snapshots
    ADD COLUMN peak_burn_rates jsonb NOT NULL DEFAULT '{}'::jsonb
        CHECK (jsonb_typeof(peak_burn_rates) = 'object');
