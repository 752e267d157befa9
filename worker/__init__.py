"""The retrain worker: claims retrain jobs from PostgreSQL, trains, and retries driver lookups."""
