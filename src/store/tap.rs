//! Following the log as the writer commits it (the daemon's `/metrics` keeps its counters this
//! way, without reading the database again).

use super::rows::{Event, MemorySample};
use rusqlite::Connection;

/// Something that follows what the writer commits (the daemon's `/metrics`). Both calls run on
/// the writer thread between transactions, so `start`'s reading of the log and the batches
/// `committed` reports after it neither overlap nor leave a gap. Both should be quick: rows
/// queue while they run.
pub trait Tap: Send {
    /// The log as it stands (everything sent before the tap is committed).
    fn start(&mut self, conn: &Connection);
    /// A batch just committed.
    fn committed(&mut self, conn: &Connection, batch: &Committed<'_>);
}

/// What one committed transaction held, for a `Tap`.
pub struct Committed<'a> {
    /// Row ids of the requests that finished (their `requests` rows hold the outcome now).
    pub finished: &'a [i64],
    pub samples: Vec<&'a MemorySample>,
    pub events: Vec<&'a Event>,
}
