-- Each process life's idle memory thinned to the leak analysis's points, kept once the life has
-- had no idle sample for an hour (src/store/life_points.rs), so a report over months reads the
-- samples of the lives its window does not hold whole, not every sample. A report takes a life's
-- points only where its window's figures for the life (first and last idle sample, counts) are
-- the ones here. Retention deletes a life's row when it prunes the life's first samples.
CREATE TABLE life_points (
    backend          TEXT    NOT NULL,
    pid              INTEGER NOT NULL,
    proc_started_at  INTEGER NOT NULL,              -- 0 when not known
    first_at         INTEGER NOT NULL,              -- its first and last idle sample, unix ms
    last_at          INTEGER NOT NULL,
    samples          INTEGER NOT NULL,              -- its idle samples
    with_footprint   INTEGER NOT NULL,              -- of those, with a footprint
    points           INTEGER NOT NULL,              -- the most points a life was thinned to
    -- Points: 24 bytes each (the bucket's middle sample's time i64, its median f64, its last
    -- sample's time i64), little-endian, in time order.
    rss              BLOB    NOT NULL,
    footprint        BLOB    NOT NULL,              -- from the samples with a footprint
    PRIMARY KEY (backend, pid, proc_started_at)
) WITHOUT ROWID;
