//! soakd as a service of the user's session: a launchd agent on macOS (`launchd.rs`), a
//! systemd user unit on Linux (`systemd.rs`). This module owns the paths they use, all under
//! one home folder that tests replace with a temporary one, and the record of the last failed
//! start, which `soakd status` shows (launchd restarts a daemon that exits non-zero every
//! `ThrottleInterval`, so a config error would otherwise only show as a quiet loop).

pub mod launchd;
pub mod systemd;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The launchd label (reverse-DNS) and the systemd unit's name.
pub const LABEL: &str = "org.soakd.agent";
pub const UNIT: &str = "soakd.service";

/// What the rendered agent runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub binary: PathBuf,
    pub config: PathBuf,
    /// Seconds the service manager waits after SIGTERM before SIGKILL.
    pub stop_timeout_s: u64,
}

/// Every path the agent uses, under one home folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub home: PathBuf,
}

impl Paths {
    pub fn new(home: impl Into<PathBuf>) -> Paths {
        Paths { home: home.into() }
    }

    /// `--home DIR` (for tests), else `$HOME`.
    pub fn from_flag(flag: Option<&Path>) -> anyhow::Result<Paths> {
        if let Some(h) = flag {
            return Ok(Paths::new(h));
        }
        match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            Some(h) => Ok(Paths::new(h)),
            None => anyhow::bail!("HOME is not set: soakd cannot tell where the user's agents live"),
        }
    }

    pub fn plist(&self) -> PathBuf {
        self.home.join("Library/LaunchAgents").join(format!("{LABEL}.plist"))
    }

    pub fn unit(&self) -> PathBuf {
        self.home.join(".config/systemd/user").join(UNIT)
    }

    /// `~/Library/Logs/soakd`: the agent's logs on macOS.
    pub fn mac_log_dir(&self) -> PathBuf {
        self.home.join("Library/Logs/soakd")
    }

    /// The default log folder on this platform (`~/.local/state/soakd/logs` off macOS).
    pub fn log_dir(&self) -> PathBuf {
        if cfg!(target_os = "macos") { self.mac_log_dir() } else { self.home.join(".local/state/soakd/logs") }
    }

    /// Where a failed start is recorded (beside the default logs, found without any config).
    pub fn start_failure(&self) -> PathBuf {
        self.log_dir().join("last-start-failure.json")
    }
}

/// The last time `soakd run` could not start, and how many times in a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartFailure {
    pub first_at: i64,
    pub at: i64,
    pub count: u64,
    pub exit_code: u8,
    pub message: String,
}

/// Records a failed start (best effort: a broken home folder must not hide the real error).
pub fn record_start_failure(paths: &Paths, exit_code: u8, message: &str, now_ms: i64) {
    let previous = last_start_failure(paths);
    let failure = StartFailure {
        first_at: previous.as_ref().map_or(now_ms, |p| p.first_at),
        at: now_ms,
        count: previous.map_or(1, |p| p.count + 1),
        exit_code,
        message: crate::text::bounded(message, 4096),
    };
    let path = paths.start_failure();
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
        std::fs::write(&path, serde_json::to_vec_pretty(&failure).unwrap_or_default())
    };
    if let Err(e) = write() {
        eprintln!("soakd: could not record this failed start in {}: {e}", path.display());
    }
}

/// Forgets failed starts (a start succeeded).
pub fn clear_start_failure(paths: &Paths) {
    let _ = std::fs::remove_file(paths.start_failure());
}

pub fn last_start_failure(paths: &Paths) -> Option<StartFailure> {
    serde_json::from_slice(&std::fs::read(paths.start_failure()).ok()?).ok()
}

/// Writes `text` to `path` through a temporary file and a rename, creating the folder.
pub fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    let dir = path.parent().context("the file has no folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("moving {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// Runs a service manager's command; its output, or why it failed, in words.
pub fn run_tool(program: &str, args: &[&str]) -> Result<String, String> {
    let shown = format!("{program} {}", args.join(" "));
    let out = Command::new(program).args(args).output().map_err(|e| format!("`{shown}` could not run: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!("`{shown}` failed ({}): {}", out.status, err.trim()))
    }
}

/// The user's id, for launchd's `gui/<uid>` domain.
pub fn uid() -> Result<String, String> {
    run_tool("id", &["-u"]).map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_live_under_the_given_home() {
        let p = Paths::new("/h");
        assert_eq!(p.plist(), PathBuf::from("/h/Library/LaunchAgents/org.soakd.agent.plist"));
        assert_eq!(p.unit(), PathBuf::from("/h/.config/systemd/user/soakd.service"));
        assert_eq!(p.mac_log_dir(), PathBuf::from("/h/Library/Logs/soakd"));
        assert!(p.start_failure().starts_with("/h"));
    }

    #[test]
    fn failed_starts_are_counted_then_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let p = Paths::new(dir.path());
        assert_eq!(last_start_failure(&p), None);
        record_start_failure(&p, 78, "c.toml: field `x`: unknown field", 1000);
        record_start_failure(&p, 78, "c.toml: field `y`: unknown field", 2000);
        let f = last_start_failure(&p).unwrap();
        assert_eq!((f.first_at, f.at, f.count, f.exit_code), (1000, 2000, 2, 78));
        assert!(f.message.contains("`y`"));
        clear_start_failure(&p);
        assert_eq!(last_start_failure(&p), None);
    }
}
