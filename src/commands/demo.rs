//! `soakd demo`: placeholder until the sim module lands.
use std::path::Path;
use std::process::ExitCode;
pub async fn run(_db: &Path, _seconds: u64) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet")
}
