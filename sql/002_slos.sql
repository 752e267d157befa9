-- 002_slos: SLO definitions and their audit trail.
-- Forward-only: a later change is a new numbered file, never an edit of this one.

-- One row per SLO. `spec` is a complete Sloth prometheus/v1 document holding just this SLO
-- (version, service, labels, slos: [one]), so a row can be exported, diffed and re-applied as is.
-- name/service/objective/time_period are copies out of it for filtering and for the UI.
CREATE TABLE slos (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text             NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]*$'),
    service      text             NOT NULL CHECK (service <> ''),
    objective    double precision NOT NULL CHECK (objective > 0 AND objective <= 100),
    time_period  text             NOT NULL CHECK (time_period ~ '^[0-9]+d$'),
    spec         jsonb            NOT NULL CHECK (jsonb_typeof(spec) = 'object'),
    created_at   timestamptz      NOT NULL DEFAULT now(),
    updated_at   timestamptz      NOT NULL DEFAULT now(),
    updated_by   text             NOT NULL CHECK (updated_by <> '')
);

-- Every change, whoever makes it: who, when, old -> new. NULL old_spec = created, NULL new_spec =
-- deleted. No foreign key to slos, so the history of a deleted SLO stays.
CREATE TABLE slo_revisions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slo_name     text        NOT NULL,
    revision     integer     NOT NULL CHECK (revision >= 1),
    changed_by   text        NOT NULL,
    changed_at   timestamptz NOT NULL DEFAULT now(),
    old_spec     jsonb,
    new_spec     jsonb,
    change_note  text        NOT NULL DEFAULT '',
    CONSTRAINT slo_revisions_numbered UNIQUE (slo_name, revision),
    CONSTRAINT slo_revisions_something CHECK (old_spec IS NOT NULL OR new_spec IS NOT NULL)
);

CREATE INDEX slo_revisions_changed_at_idx ON slo_revisions (changed_at DESC);

-- The audit trail is written by a trigger rather than by the application, so an edit from the
-- Streamlit UI, the CLI or a hand-typed psql UPDATE is recorded the same way and cannot be
-- forgotten. The writer says who and why through transaction-local settings:
--   SELECT set_config('slo_pipeline.changed_by', 'alice', true),
--          set_config('slo_pipeline.change_note', 'raise objective', true);
-- (for INSERT/UPDATE, `updated_by` of the row wins; the database user is the last resort).
-- An UPDATE that leaves `spec` as it was records nothing: only real changes are revisions.
CREATE FUNCTION slo_record_revision() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    slo_key     text;
    next_number integer;
    who         text;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.spec IS NOT DISTINCT FROM OLD.spec AND NEW.name = OLD.name THEN
        RETURN NEW;
    END IF;
    slo_key := CASE WHEN TG_OP = 'DELETE' THEN OLD.name ELSE NEW.name END;
    who := COALESCE(
        CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE NEW.updated_by END,
        NULLIF(current_setting('slo_pipeline.changed_by', true), ''),
        current_user
    );
    -- Serialise revision numbering per SLO name (also across delete + re-create).
    PERFORM pg_advisory_xact_lock(hashtext('slo_revisions:' || slo_key));
    SELECT COALESCE(max(revision), 0) + 1 INTO next_number FROM slo_revisions WHERE slo_name = slo_key;
    INSERT INTO slo_revisions (slo_name, revision, changed_by, old_spec, new_spec, change_note)
    VALUES (
        slo_key,
        next_number,
        who,
        CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE OLD.spec END,
        CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE NEW.spec END,
        COALESCE(current_setting('slo_pipeline.change_note', true), '')
    );
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER slos_audit
    AFTER INSERT OR UPDATE OR DELETE ON slos
    FOR EACH ROW EXECUTE FUNCTION slo_record_revision();
