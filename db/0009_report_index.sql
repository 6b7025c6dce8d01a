-- The report reads every finished request of a backend's window once, in time order, and only
-- these columns of each (src/store/queries.rs, `each_request`). From this index alone: in the
-- table a row holds the reply (`output`, up to 64 KiB) before the columns added later, so a row
-- with a reply over a page long sent SQLite through the reply's overflow pages to reach them
-- (a log of 6 KB replies read 5x slower than one of short replies). The index begins as the one
-- it replaces did, so every query by backend and time still finds its rows through it.
CREATE INDEX requests_report ON requests (
    backend, started_at, id, outcome, stream, ttft_ms, first_content_ms, e2e_ms, decode_tps, output_tps,
    error_signature, concurrency, prompt_chars, gap_ms, server_pid, server_seq, job, completion_tokens,
    http_status, machine_in_flight, server_load_ms, error
);
DROP INDEX requests_backend_started;
