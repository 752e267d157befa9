-- 010_ui_users_feedback_audit: who may use the operator UI, and an audit trail of incident feedback.
-- Forward-only: a later change is a new numbered file, never an edit of this one.

-- Operator accounts. A local user signs in with a password (salted scrypt, see
-- streamlit_app/passwords.py); a row without a password only grants a role to an identity that
-- an authenticating proxy or OIDC provider vouches for. Managed by `slo-pipeline ui user ...`.
CREATE TABLE ui_users (
    name           text        PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,199}$'),
    role           text        NOT NULL CHECK (role IN ('viewer', 'editor')),
    password_hash  text        CHECK (password_hash IS NULL OR password_hash LIKE 'scrypt$%'),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Every change of an incident's verdict: who, when, old -> new, including a cleared verdict
-- (new_feedback NULL), which the incidents row alone forgets. No foreign key: the trail outlives
-- the incident.
CREATE TABLE incident_feedback_events (
    id                 bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id        bigint      NOT NULL,
    changed_by         text        NOT NULL,
    changed_at         timestamptz NOT NULL DEFAULT now(),
    old_feedback       text,
    old_feedback_by    text,
    old_feedback_note  text,
    new_feedback       text,
    new_feedback_note  text
);

CREATE INDEX incident_feedback_events_incident_idx ON incident_feedback_events (incident_id, changed_at DESC);

-- Written by a trigger, as slo_revisions is, so the UI, a script or a hand-typed psql UPDATE are
-- recorded the same way. The writer names itself with
--   SELECT set_config('slo_pipeline.changed_by', 'alice', true);
-- (else the new feedback_by, else the database user).
CREATE FUNCTION incident_record_feedback() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO incident_feedback_events (
        incident_id, changed_by, old_feedback, old_feedback_by, old_feedback_note,
        new_feedback, new_feedback_note
    )
    VALUES (
        NEW.id,
        COALESCE(NULLIF(current_setting('slo_pipeline.changed_by', true), ''), NEW.feedback_by, current_user),
        OLD.feedback, OLD.feedback_by, OLD.feedback_note,
        NEW.feedback, NEW.feedback_note
    );
    RETURN NEW;
END;
$$;

CREATE TRIGGER incidents_feedback_audit
    AFTER UPDATE OF feedback, feedback_by, feedback_note ON incidents
    FOR EACH ROW
    WHEN (OLD.feedback IS DISTINCT FROM NEW.feedback
          OR OLD.feedback_by IS DISTINCT FROM NEW.feedback_by
          OR OLD.feedback_note IS DISTINCT FROM NEW.feedback_note)
    EXECUTE FUNCTION incident_record_feedback();
