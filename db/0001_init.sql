-- soakd schema, version 1. Every table and column is documented in db/README.md.
-- Times: unix milliseconds, UTC (`*_at`). Durations: milliseconds on a monotonic clock (`*_ms`).

-- One workload: one firing of one job at one backend.
CREATE TABLE runs (
    id                INTEGER PRIMARY KEY,
    job               TEXT    NOT NULL,
    backend           TEXT    NOT NULL,
    trigger           TEXT    NOT NULL,              -- 'cron' | 'once' | 'demo'
    status            TEXT    NOT NULL,              -- 'running' | 'completed' | 'cancelled' | 'skipped' | 'interrupted'
    planned_at        INTEGER NOT NULL,              -- the instant the schedule fired
    started_at        INTEGER NOT NULL,
    finished_at       INTEGER,
    requests_planned  INTEGER NOT NULL,
    requests_done     INTEGER NOT NULL DEFAULT 0,
    concurrency       INTEGER NOT NULL,
    delay_ms          INTEGER NOT NULL,
    stream            INTEGER NOT NULL,              -- 0 | 1
    max_tokens        INTEGER NOT NULL,
    backend_kind      TEXT    NOT NULL,
    base_url          TEXT    NOT NULL,
    model             TEXT,                          -- the model the config asks for
    server_pid        INTEGER,                       -- the backend's process when the run began
    owner_pid         INTEGER NOT NULL,              -- the soakd process that ran it
    owner_started_at  INTEGER NOT NULL,              -- that process's start time (unix s), to tell pid reuse
    detail            TEXT                           -- JSON: why skipped, the job's full settings
);
CREATE INDEX runs_backend_started ON runs (backend, started_at);
CREATE INDEX runs_status ON runs (status) WHERE status = 'running';

-- One row per request soakd sent. Written when the request starts (outcome 'in_flight'),
-- completed when it ends.
CREATE TABLE requests (
    id                INTEGER PRIMARY KEY,
    run_id            INTEGER NOT NULL REFERENCES runs (id),
    backend           TEXT    NOT NULL,
    job               TEXT    NOT NULL,
    worker            INTEGER NOT NULL,
    seq               INTEGER NOT NULL,              -- position in the run, from 0
    intended_at       INTEGER NOT NULL,              -- when the load shape wanted it to start
    started_at        INTEGER NOT NULL,              -- when it did start
    outcome           TEXT    NOT NULL,              -- 'ok' or a failure kind (db/README.md)
    http_status       INTEGER,
    attempts          INTEGER NOT NULL DEFAULT 1,    -- 2: a pooled connection the server had closed was retried
    stream            INTEGER NOT NULL,
    concurrency       INTEGER NOT NULL,
    prompt_name       TEXT    NOT NULL,
    prompt_chars      INTEGER NOT NULL,
    max_tokens        INTEGER NOT NULL,
    gap_ms            REAL,                          -- since this worker's previous request ended
    server_pid        INTEGER,
    server_seq        INTEGER,                       -- nth request soakd sent to that server process
    first_byte_ms     REAL,
    ttft_ms           REAL,
    first_content_ms  REAL,
    e2e_ms            REAL,
    gap_p50_ms        REAL,
    gap_p95_ms        REAL,
    gap_max_ms        REAL,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    token_source      TEXT,                          -- 'usage' | 'counted'
    decode_tps        REAL,
    output_tps        REAL,
    finish_reason     TEXT,
    reasoning_seen    INTEGER,
    tool_call_seen    INTEGER,
    tool_call_valid   INTEGER,
    server_model      TEXT,
    server_prompt_ms  REAL,
    server_decode_tps REAL,
    server_timings    TEXT,                          -- the server's own numbers, JSON, as sent
    output            TEXT,                          -- the reply, first 64 KiB
    error             TEXT,                          -- raw error text, first 4 KiB
    error_signature   TEXT                           -- the error with numbers, ids and paths masked
);
CREATE INDEX requests_backend_started ON requests (backend, started_at);
CREATE INDEX requests_run ON requests (run_id);
CREATE INDEX requests_failures ON requests (backend, started_at) WHERE outcome <> 'ok';

-- The backend's process tree, sampled around requests and on an idle cadence.
CREATE TABLE memory_samples (
    id                  INTEGER PRIMARY KEY,
    backend             TEXT    NOT NULL,
    pid                 INTEGER,                     -- NULL: the process could not be found
    proc_started_at     INTEGER,                     -- the process's start time, unix s
    taken_at            INTEGER NOT NULL,
    phase               TEXT    NOT NULL,            -- 'idle' | 'before' | 'after' | 'during'
    in_flight           INTEGER NOT NULL,            -- requests soakd had in flight to this backend
    processes           INTEGER,                     -- processes in the tree (the server and its children)
    rss_bytes           INTEGER,
    footprint_bytes     INTEGER,                     -- macOS: physical footprint; Linux: RssAnon + VmSwap
    sys_used_bytes      INTEGER,
    sys_available_bytes INTEGER,
    swap_used_bytes     INTEGER,
    run_id              INTEGER
);
CREATE INDEX memory_backend_taken ON memory_samples (backend, taken_at);

-- Things that happened: restarts, processes lost and found, skipped firings, daemon life.
CREATE TABLE events (
    id      INTEGER PRIMARY KEY,
    backend TEXT,
    kind    TEXT    NOT NULL,
    at      INTEGER NOT NULL,
    detail  TEXT                                     -- JSON
);
CREATE INDEX events_kind_at ON events (kind, at);

-- Views: the common questions, ready to query.
CREATE VIEW failures AS
SELECT r.id, r.backend, r.job, r.started_at, datetime(r.started_at / 1000, 'unixepoch') AS started_utc,
       r.outcome, r.http_status, r.error_signature, r.error, r.concurrency, r.gap_ms,
       r.server_seq, r.prompt_chars, r.run_id
FROM requests r
WHERE r.outcome NOT IN ('ok', 'in_flight');

CREATE VIEW hourly AS
SELECT backend,
       strftime('%Y-%m-%d %H:00', started_at / 1000, 'unixepoch') AS hour_utc,
       count(*)                                            AS requests,
       sum(outcome = 'ok')                                 AS ok,
       round(100.0 * sum(outcome = 'ok') / count(*), 2)    AS success_pct,
       round(avg(CASE WHEN outcome = 'ok' THEN ttft_ms END), 1)    AS avg_ttft_ms,
       round(avg(CASE WHEN outcome = 'ok' THEN decode_tps END), 1) AS avg_decode_tps
FROM requests
WHERE outcome <> 'in_flight'
GROUP BY backend, hour_utc;

CREATE VIEW restarts AS
SELECT backend, datetime(at / 1000, 'unixepoch') AS at_utc,
       json_extract(detail, '$.old_pid') AS old_pid,
       json_extract(detail, '$.new_pid') AS new_pid
FROM events
WHERE kind = 'restart';
