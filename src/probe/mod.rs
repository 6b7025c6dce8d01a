//! Probing a backend: the workload runner (each request measured in `measure`'s terms), and the memory
//! sampler that watches the backend's processes while it works.

pub mod evidence;
pub mod host;
pub mod machine;
pub mod process;
pub mod runner;
pub mod sampler;
