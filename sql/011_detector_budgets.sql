-- 011_detector_budgets: false-alarm budgets changed in the UI, overriding the pipeline YAML.
-- Forward-only: a later change is a new numbered file, never an edit of this one.

-- The YAML's `false_alarms_per_week` is each detector's default; a row here overrides it for the
-- exporter and for validation, without a restart (they re-read this table within a minute).
-- Deleting the row returns the detector to its YAML value.
CREATE TABLE detector_budgets (
    detector               text             PRIMARY KEY CHECK (detector ~ '^[a-z][a-z0-9_]*$'),
    false_alarms_per_week  double precision NOT NULL CHECK (false_alarms_per_week > 0
                                                          AND false_alarms_per_week <= 10000),
    updated_by             text             NOT NULL CHECK (updated_by <> ''),
    updated_at             timestamptz      NOT NULL DEFAULT now(),
    reason                 text             NOT NULL DEFAULT ''
);

-- Every change: who, when, why, old -> new (NULL old = first override, NULL new = back to YAML).
CREATE TABLE detector_budget_revisions (
    id          bigint           GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    detector    text             NOT NULL,
    revision    integer          NOT NULL CHECK (revision >= 1),
    changed_by  text             NOT NULL,
    changed_at  timestamptz      NOT NULL DEFAULT now(),
    old_budget  double precision,
    new_budget  double precision,
    reason      text             NOT NULL DEFAULT '',
    CONSTRAINT detector_budget_revisions_numbered UNIQUE (detector, revision)
);

-- A trigger, as for slo_revisions: the UI, the CLI or psql are recorded alike. For a DELETE the
-- writer names itself with set_config('slo_pipeline.changed_by' / 'slo_pipeline.change_note').
CREATE FUNCTION detector_budget_record_revision() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    key         text;
    next_number integer;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.false_alarms_per_week = OLD.false_alarms_per_week THEN
        RETURN NEW;
    END IF;
    key := CASE WHEN TG_OP = 'DELETE' THEN OLD.detector ELSE NEW.detector END;
    PERFORM pg_advisory_xact_lock(hashtext('detector_budget_revisions:' || key));
    SELECT COALESCE(max(revision), 0) + 1 INTO next_number FROM detector_budget_revisions WHERE detector = key;
    INSERT INTO detector_budget_revisions (detector, revision, changed_by, old_budget, new_budget, reason)
    VALUES (
        key,
        next_number,
        COALESCE(
            CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE NEW.updated_by END,
            NULLIF(current_setting('slo_pipeline.changed_by', true), ''),
            current_user
        ),
        CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE OLD.false_alarms_per_week END,
        CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE NEW.false_alarms_per_week END,
        COALESCE(
            CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE NEW.reason END,
            current_setting('slo_pipeline.change_note', true),
            ''
        )
    );
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER detector_budgets_audit
    AFTER INSERT OR UPDATE OR DELETE ON detector_budgets
    FOR EACH ROW EXECUTE FUNCTION detector_budget_record_revision();
