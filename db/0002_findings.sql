-- soakd schema, version 2: what the analysis found, kept so later reports (and the nightly
-- digest) can say what is new, what persists and what was resolved.

CREATE TABLE findings (
    id          INTEGER PRIMARY KEY,
    report_at   INTEGER NOT NULL,   -- when the report that found it ran
    window_from INTEGER NOT NULL,   -- the window it analysed
    window_to   INTEGER NOT NULL,
    kind        TEXT    NOT NULL,   -- 'leak' | 'plateau' | 'failure_rate' | 'restarts' | 'crash_pattern' | 'crash_at_request_count' | 'hypothesis' | 'drift' | 'api_overhead'
    backend     TEXT,               -- NULL for findings about several backends
    key         TEXT    NOT NULL,   -- identity within kind and backend, e.g. 'concurrency=8', 'ttft_p50'
    verdict     TEXT    NOT NULL,   -- e.g. 'leak', 'significant', 'yes', 'worse', 'better'
    status      TEXT    NOT NULL,   -- 'new' | 'ongoing' (also in the previous report) | 'resolved' (in the previous report, not in this one)
    summary     TEXT    NOT NULL,   -- one sentence for a person
    numbers     TEXT    NOT NULL,   -- JSON: the figures behind it
    evidence    TEXT                -- an SQL query that lists the rows behind it
);
CREATE INDEX findings_report ON findings (report_at);
CREATE INDEX findings_identity ON findings (kind, backend, key, report_at);

CREATE VIEW latest_findings AS
SELECT kind, backend, key, verdict, status, summary, numbers, evidence,
       datetime(window_from / 1000, 'unixepoch') AS from_utc, datetime(window_to / 1000, 'unixepoch') AS to_utc
FROM findings
WHERE report_at = (SELECT max(report_at) FROM findings);
