//! Analysis: pure functions over rows read from the store. Nothing here touches the database
//! or the clock, so every function is tested on plain values.
//!
//! `stats` (percentiles), `trend` (Theil–Sen, Mann–Kendall with Hamed–Rao's correction, CUSUM),
//! `contingency` (Fisher's exact test, Holm), `logistic` (Firth-penalised logistic regression),
//! and on top of them: `summary` (per-backend table), `leaks` (with `memory_life`: one process
//! life's memory made ready, `staircase`: growth that comes in steps, and `leak_report`: what a
//! verdict is and says), `crashes` (with
//! `episodes`: triggers and their consequences, `attribution`: each factor adjusted for the
//! others, and `request_count`: servers that die at their Nth request), `drift`, `overhead` (the
//! same model behind two backends).

pub mod attempt;
pub mod attribution;
pub mod contingency;
pub mod crash_log;
pub mod crashes;
pub mod drift;
pub mod episodes;
mod leak_report;
pub mod leaks;
pub mod logistic;
mod memory_life;
pub mod overhead;
mod request_count;
mod staircase;
pub mod stuck;
pub mod summary;
#[cfg(test)]
mod test_rng;
pub mod trend;
