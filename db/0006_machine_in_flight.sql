-- Contention: how many of soakd's requests to other backends were in flight when a request
-- started (NULL in rows written before this migration). Reports leave requests with a count
-- above zero out of their latency and throughput figures unless --include-contended.
ALTER TABLE requests ADD COLUMN machine_in_flight INTEGER;
