-- Retention: hourly aggregates of raw rows older than the configured age, which are then deleted
-- (src/store/retention.rs). Every table and column is documented in db/README.md.

-- Requests per backend, job, UTC hour and streaming mode.
CREATE TABLE request_rollups (
    backend          TEXT    NOT NULL,
    job              TEXT    NOT NULL,
    hour_at          INTEGER NOT NULL,              -- start of the UTC hour, unix ms
    stream           INTEGER NOT NULL,              -- 0 | 1
    requests         INTEGER NOT NULL,              -- counted requests (not cancelled/interrupted)
    ok               INTEGER NOT NULL,
    not_counted      INTEGER NOT NULL,              -- cancelled + interrupted (soakd's doing)
    failures         TEXT    NOT NULL,              -- JSON {"outcome": n} of the failed ones
    ttft_n           INTEGER NOT NULL,              -- successful requests with a TTFT
    ttft_sum_ms      REAL    NOT NULL,
    ttft_p50_ms      REAL,
    ttft_p95_ms      REAL,
    ttft_max_ms      REAL,
    e2e_n            INTEGER NOT NULL,
    e2e_sum_ms       REAL    NOT NULL,
    e2e_p50_ms       REAL,
    e2e_p95_ms       REAL,
    decode_n         INTEGER NOT NULL,
    decode_tps_sum   REAL    NOT NULL,
    decode_tps_p50   REAL,
    prompt_tokens    INTEGER NOT NULL,              -- summed over counted requests
    completion_tokens INTEGER NOT NULL,
    PRIMARY KEY (backend, job, hour_at, stream)
);

-- Memory samples per backend, UTC hour and server process.
CREATE TABLE memory_rollups (
    backend             TEXT    NOT NULL,
    hour_at             INTEGER NOT NULL,
    pid                 INTEGER NOT NULL,           -- 0: the process could not be found
    proc_started_at     INTEGER,
    samples             INTEGER NOT NULL,
    idle_samples        INTEGER NOT NULL,           -- with nothing in flight
    rss_avg_bytes       REAL,
    rss_max_bytes       INTEGER,
    idle_rss_avg_bytes  REAL,                       -- over the samples with nothing in flight
    footprint_avg_bytes REAL,
    footprint_max_bytes INTEGER,
    sys_available_min_bytes INTEGER,
    PRIMARY KEY (backend, hour_at, pid)
);

-- Where raw rows end: everything that started before `horizon_at` lives only in the rollups.
CREATE TABLE retention (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    horizon_at INTEGER NOT NULL,
    pruned_at  INTEGER NOT NULL,
    raw_days   REAL    NOT NULL
);

-- Per backend and UTC hour, the rolled-up past and the raw present together. Counted as the
-- `hourly` view counts: every finished request, cancelled and interrupted ones included.
CREATE VIEW hourly_history AS
SELECT backend,
       strftime('%Y-%m-%d %H:00', hour_at / 1000, 'unixepoch')           AS hour_utc,
       sum(requests + not_counted)                                       AS requests,
       sum(ok)                                                           AS ok,
       round(100.0 * sum(ok) / max(sum(requests + not_counted), 1), 2)   AS success_pct,
       round(sum(ttft_sum_ms) / nullif(sum(ttft_n), 0), 1)               AS avg_ttft_ms,
       round(sum(decode_tps_sum) / nullif(sum(decode_n), 0), 1)          AS avg_decode_tps,
       'rollup'                                                          AS source
FROM request_rollups
GROUP BY backend, hour_at
UNION ALL
SELECT backend, hour_utc, requests, ok, success_pct, avg_ttft_ms, avg_decode_tps, 'raw' AS source
FROM hourly;
