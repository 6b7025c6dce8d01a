//! The launchd agent and the systemd user unit: rendered files against committed snapshots,
//! parsed back (the plist with the `plist` crate), installed into and removed from a temporary
//! home (never the real ~/Library or ~/.config: `--home` points elsewhere, and `--no-load`
//! skips launchctl/systemctl, which Linux test machines cannot run for a user agent), and the
//! failed start that `soakd status` reports.

use crate::common;
use crate::common::{soakd, write_config};
use std::path::Path;

const HOME: &str = "/Users/alice";
const BINARY: &str = "/usr/local/bin/soakd";
const CONFIG: &str = "/Users/alice/Library/Application Support/soakd/config.toml";

fn render(systemd: bool) -> String {
    let mut args = vec!["--config", CONFIG, "install", "--print", "--home", HOME, "--binary", BINARY];
    if systemd {
        args.push("--systemd");
    }
    let (code, out, err) = soakd(&args);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("would not start"), "a missing config is worth a warning: {err}");
    out
}

/// Compares with `tests/snapshots/NAME`; `UPDATE_SNAPSHOTS=1` rewrites it.
fn snapshot(name: &str, got: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(got, want, "{} differs (UPDATE_SNAPSHOTS=1 rewrites it after a deliberate change)", path.display());
}

#[test]
fn the_plist_matches_its_snapshot_and_has_every_key() {
    let text = render(false);
    snapshot("org.soakd.agent.plist", &text);
    let plist = plist::Value::from_reader_xml(text.as_bytes()).expect("a valid plist");
    let d = plist.as_dictionary().expect("a dictionary");
    let s = |k: &str| d.get(k).and_then(|v| v.as_string()).unwrap_or_else(|| panic!("{k} missing"));
    let label = s("Label");
    assert_eq!(label.split('.').count(), 3, "reverse-DNS: {label}");
    let args: Vec<&str> = d["ProgramArguments"].as_array().unwrap().iter().map(|v| v.as_string().unwrap()).collect();
    assert_eq!(args, [BINARY, "--config", CONFIG, "run"]);
    assert!(args.iter().filter(|a| a.starts_with('/')).count() == 2, "absolute paths");
    assert_eq!(d["RunAtLoad"].as_boolean(), Some(true));
    let keep = d["KeepAlive"].as_dictionary().expect("KeepAlive is a dictionary");
    assert_eq!(keep["SuccessfulExit"].as_boolean(), Some(false), "restart only after an unsuccessful exit");
    assert_eq!(d["ThrottleInterval"].as_unsigned_integer(), Some(60));
    assert_eq!(d["ExitTimeOut"].as_unsigned_integer(), Some(20), "the default 10 s grace + 10 s");
    assert_eq!(s("ProcessType"), "Background");
    for k in ["StandardOutPath", "StandardErrorPath"] {
        assert!(s(k).starts_with("/Users/alice/Library/Logs/soakd/"), "{k}: {}", s(k));
    }
    let env = d["EnvironmentVariables"].as_dictionary().expect("EnvironmentVariables");
    assert_eq!(env["SOAKD_AGENT"].as_string(), Some("launchd"));
    assert!(env["PATH"].as_string().unwrap().contains("/usr/bin"));
}

#[test]
fn odd_characters_in_paths_are_escaped_by_the_plist_writer() {
    let home = "/Users/a & b <c>";
    let (code, out, err) =
        soakd(&["--config", "/tmp/x&y/c.toml", "install", "--print", "--home", home, "--binary", "/opt/s\"d/soakd"]);
    assert_eq!(code, 0, "{err}");
    let plist = plist::Value::from_reader_xml(out.as_bytes()).expect("still a valid plist");
    let d = plist.as_dictionary().unwrap();
    let args = d["ProgramArguments"].as_array().unwrap();
    assert_eq!(args[0].as_string(), Some("/opt/s\"d/soakd"));
    assert_eq!(args[2].as_string(), Some("/tmp/x&y/c.toml"));
    assert_eq!(d["WorkingDirectory"].as_string(), Some(home));
}

/// `[Section]` → `key=value` lines, failing on anything else.
fn parse_unit(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("not key=value: {line}"));
        assert!(!section.is_empty(), "{line} outside any section");
        out.push((section.clone(), k.to_string(), v.to_string()));
    }
    out
}

#[test]
fn the_systemd_unit_matches_its_snapshot_and_parses() {
    let text = render(true);
    snapshot("soakd.service", &text);
    let entries = parse_unit(&text);
    let get = |s: &str, k: &str| entries.iter().find(|e| e.0 == s && e.1 == k).map(|e| e.2.as_str());
    assert_eq!(get("Service", "ExecStart"), Some(format!("\"{BINARY}\" --config \"{CONFIG}\" run").as_str()));
    assert_eq!(get("Service", "Restart"), Some("on-failure"));
    assert_eq!(get("Service", "RestartPreventExitStatus"), Some("78"), "a config error is not retried forever");
    assert_eq!(get("Install", "WantedBy"), Some("default.target"));
    assert!(get("Unit", "Description").is_some());
}

#[test]
fn systemd_analyze_accepts_the_unit_where_it_exists() {
    let Ok(probe) = std::process::Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed: the unit was only parsed");
        return;
    };
    assert!(probe.status.success());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &common::backend("a", 1), "");
    let (code, out, err) = soakd(&[
        "--config",
        config.to_str().unwrap(),
        "install",
        "--systemd",
        "--print",
        "--home",
        dir.path().to_str().unwrap(),
        "--binary",
        common::SOAKD,
    ]);
    assert_eq!(code, 0, "{err}");
    let unit = dir.path().join("soakd.service");
    std::fs::write(&unit, out).unwrap();
    let v = std::process::Command::new("systemd-analyze").arg("verify").arg(&unit).output().unwrap();
    let said = String::from_utf8_lossy(&v.stderr);
    let ours: Vec<&str> = said.lines().filter(|l| l.contains("soakd.service")).collect();
    // It exits 0 even for values it ignores, so its complaints about our file are what count.
    assert!(ours.is_empty(), "systemd-analyze verify complained:\n{said}");
}

#[test]
fn install_writes_into_the_given_home_and_uninstall_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let config = write_config(dir.path(), &common::backend("a", 1), "");
    let c = config.to_str().unwrap();
    let h = home.to_str().unwrap();
    for (systemd, file) in
        [(false, "Library/LaunchAgents/org.soakd.agent.plist"), (true, ".config/systemd/user/soakd.service")]
    {
        let mut args = vec!["--config", c, "install", "--no-load", "--home", h];
        if systemd {
            args.push("--systemd");
        }
        let (code, out, err) = soakd(&args);
        assert_eq!(code, 0, "{out}\n{err}");
        let written = std::fs::read_to_string(home.join(file)).expect("written under the given home");
        assert!(written.contains(&config.canonicalize().unwrap().display().to_string()), "{written}");
        assert!(out.contains("not loaded (--no-load)"), "{out}");
        let mut args = vec!["uninstall", "--no-load", "--home", h];
        if systemd {
            args.push("--systemd");
        }
        let (code, out, err) = soakd(&args);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("removed"), "{out}");
        assert!(!home.join(file).exists());
    }
    assert!(home.join("Library/Logs/soakd").is_dir(), "the agent's log folder is made");
}

#[test]
fn install_refuses_an_invalid_config_with_78() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[[backend]]\nname = \"a\"\n", "");
    let h = dir.path().join("home");
    let (code, _, err) =
        soakd(&["--config", config.to_str().unwrap(), "install", "--no-load", "--home", h.to_str().unwrap()]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("fix the config before installing") && err.contains("field `kind`"), "{err}");
    assert!(!h.join("Library").exists(), "nothing written");
}

#[test]
fn a_failed_start_is_recorded_and_status_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        write_config(dir.path(), "[[backend]]\nname = \"a\"\nkind = \"openai\"\nurl = \"http://127.0.0.1:1/v1\"\n", "");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let run = || {
        std::process::Command::new(common::SOAKD)
            .args(["--config", config.to_str().unwrap(), "run"])
            .env("HOME", &home)
            .env("SOAKD_AGENT", "launchd")
            .output()
            .unwrap()
    };
    let first = run();
    assert_eq!(first.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&first.stderr).contains("without /v1"));
    run();
    let (code, out, err) = soakd(&["--config", config.to_str().unwrap(), "status", "--home", home.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("failed start") && out.contains("2 times in a row") && out.contains("exit 78"), "{out}");
    assert!(out.contains("without /v1"), "the message itself: {out}");
    assert!(out.contains("not installed"), "{out}");
}

#[cfg(not(target_os = "macos"))]
#[test]
fn a_launchd_install_off_macos_points_to_systemd_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &common::backend("a", 1), "");
    let h = dir.path().join("home");
    let (code, _, err) = soakd(&["--config", config.to_str().unwrap(), "install", "--home", h.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("soakd install --systemd"), "{err}");
    assert!(!h.exists());
}
