//! `soakd install` and `soakd uninstall`: the launchd agent (macOS) or, with `--systemd`, the
//! systemd user unit (Linux). The config is validated first, so an agent is never installed to
//! fail at every start.

use crate::agent::{self, Paths, Spec, launchd, systemd};
use crate::config;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub struct Args {
    pub systemd: bool,
    pub print: bool,
    pub no_load: bool,
    pub home: Option<PathBuf>,
    pub binary: Option<PathBuf>,
}

pub fn install(flag: Option<&Path>, args: Args) -> anyhow::Result<ExitCode> {
    if !args.systemd && !args.print && !args.no_load && !cfg!(target_os = "macos") {
        anyhow::bail!(
            "launchd agents are macOS's: on Linux use `soakd install --systemd` (or --print / --no-load to only render or write the plist)"
        );
    }
    let paths = Paths::from_flag(args.home.as_deref())?;
    let (config_path, _) = config::locate(flag)?;
    let config_path = absolute(&config_path)?;
    let grace = match super::load(Some(&config_path)) {
        Ok((config, _schedules)) => {
            warn_about_keys(&config, args.systemd);
            config.shutdown_grace.as_secs()
        }
        Err(e) if args.print => {
            eprintln!("soakd: warning: the agent would not start with this config: {e:#}");
            10
        }
        Err(e) => {
            return Err(e.context("fix the config before installing the agent (`soakd check` lists every problem)"));
        }
    };
    let binary = match args.binary {
        Some(b) => b,
        None => std::env::current_exe().and_then(|p| p.canonicalize()).context("finding soakd's own binary")?,
    };
    if binary.components().any(|c| c.as_os_str() == "target") && args.home.is_none() {
        eprintln!(
            "soakd: warning: {} looks like a build folder's binary; `cargo install --path .` first, so a rebuild does not change what the agent runs",
            binary.display()
        );
    }
    let spec = Spec { binary, config: config_path, stop_timeout_s: grace + 10 };
    let (text, path) = if args.systemd {
        (systemd::render(&spec, &paths), paths.unit())
    } else {
        (launchd::render(&spec, &paths)?, paths.plist())
    };
    if args.print {
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let logs = if args.systemd { paths.log_dir() } else { paths.mac_log_dir() };
    std::fs::create_dir_all(&logs).with_context(|| format!("creating the log folder {}", logs.display()))?;
    agent::write_file(&path, &text)?;
    println!("wrote {}", path.display());
    if args.no_load {
        println!("not loaded (--no-load); load it with: {}", load_hint(args.systemd, &path));
        return Ok(ExitCode::SUCCESS);
    }
    let loaded = if args.systemd { systemd::enable() } else { launchd::bootstrap(&paths) };
    loaded.map_err(|e| {
        anyhow::anyhow!("{e}\n  the file is written; load it by hand with: {}", load_hint(args.systemd, &path))
    })?;
    println!("loaded: soakd runs now and at every login; `soakd status` shows how it is doing");
    Ok(ExitCode::SUCCESS)
}

pub fn uninstall(systemd: bool, no_load: bool, home: Option<&Path>) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_flag(home)?;
    let path = if systemd { paths.unit() } else { paths.plist() };
    if !no_load {
        let unloaded = if systemd { systemd::disable() } else { launchd::bootout() };
        unloaded.map_err(anyhow::Error::msg)?;
    }
    match std::fs::remove_file(&path) {
        Ok(()) => println!("removed {}", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => println!("{} was not installed", path.display()),
        Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
    }
    if systemd && !no_load {
        systemd::reload();
    }
    Ok(ExitCode::SUCCESS)
}

fn load_hint(systemd: bool, path: &Path) -> String {
    if systemd {
        "systemctl --user daemon-reload && systemctl --user enable --now soakd.service".to_string()
    } else {
        format!("launchctl bootstrap gui/$(id -u) {}", path.display())
    }
}

/// The agent does not inherit the shell's environment: say which key variables it will lack.
fn warn_about_keys(config: &config::Config, systemd: bool) {
    for b in &config.backends {
        if let Some(var) = &b.api_key_env {
            let how = if systemd {
                format!("systemctl --user set-environment {var}=…")
            } else {
                format!("launchctl setenv {var} …")
            };
            eprintln!(
                "soakd: note: backend \"{}\" reads its key from ${var}, which the agent does not inherit from your shell; set it for the session with `{how}`",
                b.name
            );
        }
    }
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    if let Ok(c) = p.canonicalize() {
        return Ok(c);
    }
    Ok(std::env::current_dir()?.join(p))
}
