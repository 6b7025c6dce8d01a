-- soakd schema, version 3: the servers' own signals beside soakd's measurements (db/README.md).

-- The server's own numbers for each request, where the server gives them.
ALTER TABLE requests ADD COLUMN server_ttft_ms REAL;
ALTER TABLE requests ADD COLUMN server_load_ms REAL;            -- model load time spent on this request (Ollama, mlx-lm worker start)
ALTER TABLE requests ADD COLUMN server_total_ms REAL;
ALTER TABLE requests ADD COLUMN server_prompt_tokens INTEGER;
ALTER TABLE requests ADD COLUMN server_completion_tokens INTEGER;
ALTER TABLE requests ADD COLUMN server_stop_reason TEXT;
ALTER TABLE requests ADD COLUMN server_peak_bytes INTEGER;      -- peak memory the runtime reports (MLX)

-- What the server said about itself when the run began.
ALTER TABLE runs ADD COLUMN server_version TEXT;
ALTER TABLE runs ADD COLUMN server_model TEXT;
ALTER TABLE runs ADD COLUMN server_info TEXT;                   -- JSON: everything else it said (build, context size, ...)

-- The server's own view of its state, taken before and after each workload.
CREATE TABLE server_samples (
    id               INTEGER PRIMARY KEY,
    backend          TEXT    NOT NULL,
    run_id           INTEGER,
    taken_at         INTEGER NOT NULL,
    phase            TEXT    NOT NULL,                     -- 'before' | 'after'
    source           TEXT    NOT NULL,                     -- 'metrics' | 'slots' | 'health' | 'ps' | 'models' | 'worker'
    memory_bytes     INTEGER,                              -- memory the server reports for its model(s)
    gpu_memory_bytes INTEGER,                              -- of that, on the GPU (or MLX peak)
    data             TEXT    NOT NULL                      -- JSON: the parsed numbers
);
CREATE INDEX server_samples_backend_taken ON server_samples (backend, taken_at);

-- What the machine knew when a request failed or a server restarted: log tails, crash
-- reports, unified-log lines, a worker's exit status. Bounded in size.
CREATE TABLE crash_evidence (
    id          INTEGER PRIMARY KEY,
    backend     TEXT    NOT NULL,
    request_id  INTEGER REFERENCES requests (id),          -- the failed request it was gathered for
    event_id    INTEGER REFERENCES events (id),            -- or the restart event
    at          INTEGER NOT NULL,
    source      TEXT    NOT NULL,                          -- 'log' | 'crash_report' | 'unified_log' | 'exit'
    path        TEXT,                                      -- the file it came from
    text        TEXT    NOT NULL
);
CREATE INDEX crash_evidence_request ON crash_evidence (request_id);
CREATE INDEX crash_evidence_backend_at ON crash_evidence (backend, at);
