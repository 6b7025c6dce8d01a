-- The successful requests' latency sketches per backend, UTC hour, streaming mode and contention,
-- so a report over weeks merges hours instead of reading every row's latencies
-- (src/store/latency_hours.rs). Written for closed hours by the daemon's hourly upkeep, not by
-- the request path; the report checks each hour's `ok` against its rows and reads the rows of
-- any hour that disagrees or has none here. Retention deletes an hour's rows with its requests.
CREATE TABLE latency_hours (
    backend        TEXT    NOT NULL,
    hour_at        INTEGER NOT NULL,              -- start of the UTC hour, unix ms
    stream         INTEGER NOT NULL,              -- 0 | 1
    contended      INTEGER NOT NULL,              -- 1: machine_in_flight > 0
    ok             INTEGER NOT NULL,              -- successful requests summed
    -- DDSketch, 1 % relative error, in DataDog's binary encoding; NULL where no request had one.
    ttft           BLOB,
    first_content  BLOB,
    e2e            BLOB,
    decode_tps     BLOB,
    output_tps     BLOB,
    PRIMARY KEY (backend, hour_at, stream, contended)
) WITHOUT ROWID;
