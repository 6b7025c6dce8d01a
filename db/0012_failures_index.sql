-- The digest's chart of failures over time (src/store/queries.rs, `failures_per_bucket`) counts a
-- backend's failures in its window. Migration 0001's partial index held only (backend,
-- started_at), so SQLite took the report's covering index (0009) instead and read every request
-- of the window: 0.4 s a backend over the 90-day bench log. With the outcome in it, this index
-- alone answers that query, reading only the failures (0.03 s).
DROP INDEX requests_failures;
CREATE INDEX requests_failures ON requests (backend, started_at, outcome) WHERE outcome <> 'ok';
