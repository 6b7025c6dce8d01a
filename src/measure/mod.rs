//! The measurement vocabulary, the bottom layer: what became of a request ([`Outcome`]), when
//! each of its events happened ([`Timeline`], [`Delta`]), what the server said about it
//! ([`ServerNumbers`]), the finished measurement ([`Measured`]) and the few statistics every
//! layer above computes the same way ([`stats`], and [`distribution`] for a window's values in bounded memory), and the names soakd records, typed ([`kinds`]). It uses nothing of soakd but `text` and `time`.

pub mod distribution;
pub mod kinds;
pub mod numbers;
pub mod outcome;
pub mod stats;
pub mod timeline;

pub use kinds::{EventKind, FindingKind, Phase, Trigger};
pub use numbers::ServerNumbers;
pub use outcome::Outcome;
pub use timeline::{Delta, Measured, Timeline};
