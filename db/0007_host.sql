-- The machine a log was written on: one row per distinct machine description (a new soakd
-- version or OS update is a new row), with when soakd first and last ran there. Filled from
-- sysinfo when a session opens; `last_seen_at` moves on at every open and at a clean stop.
CREATE TABLE host (
    id             INTEGER PRIMARY KEY,
    hostname       TEXT NOT NULL,
    model          TEXT,              -- hardware model: macOS `hw.model` (Mac15,8), Linux DMI product name
    chip           TEXT,              -- the CPU's brand string (Apple M3 Max)
    cpus           INTEGER,
    memory_bytes   INTEGER,
    os             TEXT,              -- OS name and version (macOS 15.3.1)
    soakd_version  TEXT NOT NULL,
    first_seen_at  INTEGER NOT NULL,  -- unix ms
    last_seen_at   INTEGER NOT NULL,
    UNIQUE (hostname, model, chip, cpus, memory_bytes, os, soakd_version)
);
