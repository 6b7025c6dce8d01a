//! The machine soakd runs on, described once per session for the log's `host` table: its name,
//! hardware model and chip, CPU count, memory, OS and soakd's version (sysinfo, plus macOS's
//! `hw.model` or Linux's DMI product name for the model).

use crate::store::host::Host;
use crate::text::bounded;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

/// This machine, now.
pub fn this_machine() -> Host {
    let kinds =
        RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing()).with_memory(MemoryRefreshKind::nothing().with_ram());
    // Where sysinfo cannot read the system, the description has only what the rest could tell.
    let sys = System::new_with_specifics(kinds).ok();
    let cpus = sys.as_ref().map(|s| s.cpus()).unwrap_or_default();
    let chip = cpus.first().map(|c| c.brand().trim().to_string()).filter(|b| !b.is_empty());
    Host {
        hostname: bounded(&System::host_name().unwrap_or_else(|_| "unknown".into()), 255),
        model: model().map(|m| bounded(m.trim(), 255)).filter(|m| !m.is_empty()),
        chip: chip.map(|c| bounded(&c, 255)),
        cpus: (!cpus.is_empty()).then_some(cpus.len() as u32),
        memory_bytes: sys.as_ref().map(System::total_memory).filter(|m| *m > 0),
        os: System::long_os_version().ok().map(|o| bounded(&o, 255)),
        soakd_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// The hardware model: `Mac15,8` on macOS, the DMI product name on Linux.
fn model() -> Option<String> {
    if cfg!(target_os = "macos") {
        let out = std::process::Command::new("sysctl").args(["-n", "hw.model"]).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        std::fs::read_to_string("/sys/devices/virtual/dmi/id/product_name").ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_has_a_name_memory_and_cpus() {
        let h = this_machine();
        assert!(!h.hostname.is_empty());
        assert!(h.memory_bytes.is_some_and(|m| m > 100 << 20), "{h:?}");
        assert!(h.cpus.is_some_and(|n| n >= 1), "{h:?}");
        assert_eq!(h.soakd_version, env!("CARGO_PKG_VERSION"));
    }
}
