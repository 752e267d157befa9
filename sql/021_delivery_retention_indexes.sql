-- 021_delivery_retention_indexes: let the worker prune old raw deliveries cheaply.
-- Forward-only: a later change is a new numbered file, never an edit of this one.
--
-- The retention pass (worker/retention.py) deletes deliveries that no incident references as its
-- first or last delivery; both that check and the foreign keys' own check on delete need these
-- indexes, or every deleted delivery would scan the incidents table.
CREATE INDEX incidents_first_seen_delivery_idx ON incidents (first_seen_delivery_id);
CREATE INDEX incidents_last_seen_delivery_idx ON incidents (last_seen_delivery_id);
