-- The report reads a failure's detail (its end-to-end time, signature, HTTP status and error)
-- from this index, beside its pass over every request through `requests_report`
-- (src/store/request_rows.rs): the pass over months of requests then reads only the columns every
-- request needs, about a third fewer, and a failure's detail is read once, from the failures alone.
-- `id` follows `started_at`, the order both reads keep, so the two are merged as they stream. The
-- digest's chart of failures over time (0012) is still answered from this index alone.
DROP INDEX requests_failures;
CREATE INDEX requests_failures ON requests (
    backend, started_at, id, outcome, e2e_ms, error_signature, http_status, error
) WHERE outcome <> 'ok';
