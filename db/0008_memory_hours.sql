-- Memory samples summed per backend, UTC hour and process life as they are written (a trigger), so
-- a report over months finds each life's idle samples and the peak RSS without reading every
-- sample. Exact: counts, min, max. Retention deletes an hour's row with the hour's raw samples.
CREATE TABLE memory_hours (
    backend          TEXT    NOT NULL,
    hour_at          INTEGER NOT NULL,              -- start of the UTC hour, unix ms
    pid              INTEGER NOT NULL,              -- 0: the process could not be found
    proc_started_at  INTEGER NOT NULL,              -- 0 when not known
    samples          INTEGER NOT NULL,
    rss_max_bytes    INTEGER,
    idle_samples     INTEGER NOT NULL,              -- in_flight = 0, a known process and an RSS
    idle_footprint   INTEGER NOT NULL,              -- of those, with a footprint
    idle_first_at    INTEGER,
    idle_last_at     INTEGER,
    idle_at_sum      INTEGER NOT NULL,              -- sums over the idle samples, for means
    idle_rss_sum     INTEGER NOT NULL,
    idle_footprint_sum INTEGER NOT NULL,            -- over those with a footprint
    PRIMARY KEY (backend, hour_at, pid, proc_started_at)
) WITHOUT ROWID;

INSERT INTO memory_hours
SELECT backend, (taken_at / 3600000) * 3600000, coalesce(pid, 0), coalesce(proc_started_at, 0), count(*),
       max(rss_bytes), sum(idle), sum(idle AND footprint_bytes IS NOT NULL),
       min(CASE WHEN idle THEN taken_at END), max(CASE WHEN idle THEN taken_at END),
       coalesce(sum(CASE WHEN idle THEN taken_at END), 0), coalesce(sum(CASE WHEN idle THEN rss_bytes END), 0),
       coalesce(sum(CASE WHEN idle THEN footprint_bytes END), 0)
FROM (SELECT *, (in_flight = 0 AND pid IS NOT NULL AND rss_bytes IS NOT NULL) AS idle FROM memory_samples)
GROUP BY 1, 2, 3, 4;

CREATE TRIGGER memory_hours_insert AFTER INSERT ON memory_samples
BEGIN
    -- `WHERE true`: an upsert from a SELECT needs it (SQLite's parser).
    INSERT INTO memory_hours
    SELECT NEW.backend, (NEW.taken_at / 3600000) * 3600000, coalesce(NEW.pid, 0), coalesce(NEW.proc_started_at, 0),
           1, NEW.rss_bytes, idle, idle AND NEW.footprint_bytes IS NOT NULL,
           CASE WHEN idle THEN NEW.taken_at END, CASE WHEN idle THEN NEW.taken_at END,
           CASE WHEN idle THEN NEW.taken_at ELSE 0 END, CASE WHEN idle THEN NEW.rss_bytes ELSE 0 END,
           CASE WHEN idle THEN coalesce(NEW.footprint_bytes, 0) ELSE 0 END
    FROM (SELECT NEW.in_flight = 0 AND NEW.pid IS NOT NULL AND NEW.rss_bytes IS NOT NULL AS idle)
    WHERE true
    ON CONFLICT (backend, hour_at, pid, proc_started_at) DO UPDATE SET
        samples = samples + 1,
        rss_max_bytes = CASE WHEN rss_max_bytes IS NULL OR excluded.rss_max_bytes > rss_max_bytes
                             THEN coalesce(excluded.rss_max_bytes, rss_max_bytes) ELSE rss_max_bytes END,
        idle_samples = idle_samples + excluded.idle_samples,
        idle_footprint = idle_footprint + excluded.idle_footprint,
        idle_first_at = CASE WHEN idle_first_at IS NULL OR excluded.idle_first_at < idle_first_at
                             THEN coalesce(excluded.idle_first_at, idle_first_at) ELSE idle_first_at END,
        idle_last_at = CASE WHEN idle_last_at IS NULL OR excluded.idle_last_at > idle_last_at
                            THEN coalesce(excluded.idle_last_at, idle_last_at) ELSE idle_last_at END,
        idle_at_sum = idle_at_sum + excluded.idle_at_sum,
        idle_rss_sum = idle_rss_sum + excluded.idle_rss_sum,
        idle_footprint_sum = idle_footprint_sum + excluded.idle_footprint_sum;
END;

-- The leak analysis and the digest's memory chart read the idle samples in time order: only
-- those, from the index alone.
CREATE INDEX memory_idle ON memory_samples (backend, taken_at, id, pid, proc_started_at, rss_bytes, footprint_bytes)
    WHERE in_flight = 0 AND pid IS NOT NULL AND rss_bytes IS NOT NULL;
