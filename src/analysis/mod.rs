//! Analysis: pure functions over rows read from the store. Nothing here touches the database
//! or the clock, so every function is tested on plain values.
//!
//! `stats` (percentiles), `trend` (Theil–Sen, Mann–Kendall, CUSUM), `contingency` (Fisher's
//! exact test, Holm), and on top of them: `summary` (per-backend table), `leaks`, `crashes`,
//! `drift`, `overhead` (the same model behind two backends).

pub mod contingency;
pub mod crashes;
pub mod drift;
pub mod leaks;
pub mod overhead;
pub mod stats;
pub mod summary;
pub mod trend;
