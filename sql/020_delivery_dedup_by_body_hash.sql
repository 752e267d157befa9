-- 020_delivery_dedup_by_body_hash: deduplicate deliveries on the body's SHA-256 alone.
-- Forward-only: a later change is a new numbered file, never an edit of this one.
--
-- The old key (group_key, receiver, status, body_sha256) put Alertmanager's groupKey into a btree
-- index, whose rows are limited to about 2.7 kB: an incompressible 4,000-character groupKey could
-- never be stored, not even as a refused delivery, and got a 503 on every retry (a poison
-- notification). receiver, status and group_key are all read from the body, so the body's hash
-- alone identifies the same delivery: the constraint keeps its name and its meaning.
ALTER TABLE alert_deliveries DROP CONSTRAINT alert_deliveries_dedup;
ALTER TABLE alert_deliveries ADD CONSTRAINT alert_deliveries_dedup UNIQUE (body_sha256);
