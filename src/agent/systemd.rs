//! The systemd user unit (Linux): `~/.config/systemd/user/soakd.service`, enabled with
//! `systemctl --user enable --now`. Restarts on failure, except after exit 78 (an invalid
//! config), which `RestartPreventExitStatus` leaves stopped until it is fixed.

use super::{Paths, Spec, UNIT, run_tool};

/// The unit file for `spec`.
pub fn render(spec: &Spec, paths: &Paths) -> String {
    format!(
        "# soakd's systemd user unit, written by `soakd install --systemd`.\n\
         # Logs: journalctl --user -u soakd, and the daily files of the config's [log] dir.\n\
         [Unit]\n\
         Description=soakd: soak-tests local LLM servers on a schedule\n\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStart={} --config {} run\n\
         WorkingDirectory={}\n\
         Environment=SOAKD_AGENT=systemd\n\
         Restart=on-failure\n\
         RestartSec=60\n\
         RestartPreventExitStatus=78\n\
         TimeoutStopSec={}\n\
         Nice=10\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        quote(&spec.binary.display().to_string()),
        quote(&spec.config.display().to_string()),
        escape(&paths.home.display().to_string()),
        spec.stop_timeout_s,
    )
}

/// A word of `ExecStart`: quoted, with systemd's `\`, `"` and `%` escapes.
fn quote(word: &str) -> String {
    format!("\"{}\"", escape(word).replace('"', "\\\""))
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "%%")
}

/// Reloads systemd's user units and enables and starts soakd's.
pub fn enable() -> Result<(), String> {
    run_tool("systemctl", &["--user", "daemon-reload"])?;
    run_tool("systemctl", &["--user", "enable", "--now", UNIT]).map(|_| ())
}

/// Stops and disables the unit; not being loaded is not an error.
pub fn disable() -> Result<(), String> {
    match run_tool("systemctl", &["--user", "disable", "--now", UNIT]) {
        Ok(_) => Ok(()),
        Err(e) if e.contains("not loaded") || e.contains("does not exist") => Ok(()),
        Err(e) => Err(e),
    }
}

pub fn reload() {
    let _ = run_tool("systemctl", &["--user", "daemon-reload"]);
}

/// `systemctl --user is-active`: `active`, `inactive`, `failed`, … (`None`: no systemctl).
pub fn state() -> Option<String> {
    let out = std::process::Command::new("systemctl").args(["--user", "is-active", UNIT]).output().ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!s.is_empty()).then_some(s)
}
