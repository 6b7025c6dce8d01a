//! Analysis: pure functions over rows read from the store. Nothing here touches the database
//! or the clock, so every function is tested on plain values.

pub mod stats;
pub mod summary;
