//! `soakd init`: the first run in one command — finds the LLM servers running here, writes a
//! commented config with them at the config path (never over an existing one without
//! `--force`), copies the shipped schedules beside it, checks the result as `soakd check` does,
//! and says what to run next.

use crate::cli::Search;
use crate::config;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The shipped schedules (`schedules/` in the repository), built into the binary so an
/// installed soakd can copy them.
const SCHEDULES: [(&str, &str); 7] = [
    ("bursts.toml", include_str!("../../schedules/bursts.toml")),
    ("context.toml", include_str!("../../schedules/context.toml")),
    ("digest.toml", include_str!("../../schedules/digest.toml")),
    ("probe.toml", include_str!("../../schedules/probe.toml")),
    ("seed-report.toml", include_str!("../../schedules/seed-report.toml")),
    ("soak.toml", include_str!("../../schedules/soak.toml")),
    ("tools.toml", include_str!("../../schedules/tools.toml")),
];

/// Writes the config (over an existing one only with `force`) for the servers `search` finds.
pub async fn run(flag: Option<&Path>, search: &Search, force: bool) -> anyhow::Result<ExitCode> {
    let (path, from) = config::locate(flag)?;
    if path.exists() && !force {
        anyhow::bail!(
            "{} exists ({from}); soakd init never overwrites a config: edit it, or pass --force to write a new one",
            path.display()
        );
    }
    let found = super::discover::find(search).await;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    std::fs::write(&path, config_text(&found, &search.host))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    let schedules = dir.join("schedules");
    std::fs::create_dir_all(&schedules).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", schedules.display()))?;
    let mut copied = Vec::new();
    for (name, text) in SCHEDULES {
        let file = schedules.join(name);
        if file.exists() && !force {
            continue; // the user's own edits stay
        }
        std::fs::write(&file, text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", file.display()))?;
        copied.push(name);
    }
    eprintln!();
    eprintln!("wrote {} ({} backend{})", path.display(), found.len(), if found.len() == 1 { "" } else { "s" });
    eprintln!("copied {} schedule file(s) to {}", copied.len(), schedules.display());
    eprintln!();
    let checked = super::check::run(Some(&path), 1);
    let config_flag = match from {
        "the default location" => String::new(),
        _ => format!(" --config {}", path.display()),
    };
    if found.is_empty() {
        eprintln!(
            "\nNo server answered, so the config has no backend yet: start your servers and run `soakd init --force`, or add [[backend]] entries to {} (README.md, \"Configuration\").",
            path.display()
        );
    } else {
        eprintln!("\nNext:");
        eprintln!("  soakd{config_flag} once probe     # one job now, with a progress bar and a summary");
        eprintln!("  soakd{config_flag} install        # run the schedules as a login agent (--systemd on Linux)");
    }
    checked
}

/// The config `init` writes: the settings a first run needs, the others commented with their
/// defaults, and the servers found.
fn config_text(found: &[crate::discover::Found], host: &str) -> String {
    let backends = if found.is_empty() {
        format!(
            "# No LLM server answered on {host}. An entry looks like this (README.md, \"Backends\"):\n\
             # [[backend]]\n# name = \"mlx-server\"\n# kind = \"openai\"\n# url = \"http://127.0.0.1:8080\"\n"
        )
    } else {
        format!(
            "# The servers soakd init found running on {host} (`soakd discover` looks again):\n\n{}",
            crate::discover::entries(found)
        )
    };
    format!(
        r#"# soakd's config, written by `soakd init`. Every key is in README.md, "Configuration";
# `soakd check` validates this file and the schedules.

db = "soakd.db"                  # the SQLite log, beside this file
schedules = "schedules"          # the shipped schedules, copied beside this file
# shutdown_grace_s = 10          # on SIGTERM, how long in-flight requests may finish

# [log]
# keep_days = 14                 # the daemon's daily log files kept

# [retention]
# raw_days = 90                  # raw rows kept; older ones become hourly rollups

# The nightly digest by mail (README.md, "Digest by email"):
# [smtp]
# host = "smtp.example.com"
# username = "me@example.com"
# password_env = "SOAKD_SMTP_PASSWORD"
# from = "soakd <me@example.com>"
# to = ["me@example.com"]

# Prometheus's /metrics from `soakd run` (README.md, "Monitoring and fleets"):
# [metrics]
# listen = "127.0.0.1:9464"
# bearer_token_env = "SOAKD_METRICS_TOKEN"   # required off loopback

{backends}"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_schedule_is_built_in() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schedules");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        files.sort();
        let built_in: Vec<&str> = SCHEDULES.iter().map(|(n, _)| *n).collect();
        assert_eq!(files, built_in, "schedules/ and commands::init::SCHEDULES must list the same files");
    }

    #[test]
    fn the_written_config_without_servers_is_valid_toml_with_no_backend() {
        let text = config_text(&[], "127.0.0.1");
        let table: toml::Table = text.parse().unwrap();
        assert_eq!(table.get("db").and_then(|v| v.as_str()), Some("soakd.db"));
        assert!(table.get("backend").is_none());
    }
}
