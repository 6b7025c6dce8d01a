//! Probing a backend: the workload runner, each request's timeline and outcome, and the memory
//! sampler that watches the backend's processes while it works.

pub mod evidence;
pub mod machine;
pub mod outcome;
pub mod process;
pub mod runner;
pub mod sampler;
pub mod timeline;

pub use outcome::Outcome;
