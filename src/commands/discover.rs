//! `soakd discover`: looks at the well-known local ports (and any given) and tells what answers
//! there. The `[[backend]]` entries go to stdout as TOML (its comments included) and the summary for
//! a person to stderr, so `soakd discover >> config.toml` leaves a valid config.

use crate::cli::Search;
use crate::discover::{self, WELL_KNOWN};
use futures_util::future::join_all;
use std::process::ExitCode;

pub async fn run(search: &Search) -> anyhow::Result<ExitCode> {
    let hits = find(search).await;
    let host = &search.host;
    if hits.is_empty() {
        println!("# soakd discover: no LLM server answered on {host}");
    } else {
        println!("# soakd discover: {} server(s) on {host}\n\n{}", hits.len(), discover::entries(&hits).trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

/// Looks at the well-known ports and the search's own on its host, tells a person on stderr what
/// it found, and returns the servers that answered.
pub async fn find(search: &Search) -> Vec<discover::Found> {
    let (host, timeout) = (search.host.as_str(), search.timeout());
    let mut ports: Vec<(u16, &str)> = WELL_KNOWN.to_vec();
    for p in &search.ports {
        if !ports.iter().any(|(known, _)| known == p) {
            ports.push((*p, "--port"));
        }
    }
    let found: Vec<_> = join_all(ports.iter().map(|(p, _)| discover::probe(host, *p, timeout))).await;
    let (hits, misses): (Vec<_>, Vec<_>) = ports.iter().zip(found).partition(|(_, f)| f.is_some());
    let hits: Vec<discover::Found> = hits.into_iter().filter_map(|(_, f)| f).collect();
    if hits.is_empty() {
        eprintln!("No LLM server answered on {host} (ports {}).", port_list(&ports));
    } else {
        eprintln!("Found {} server{} on {host}:", hits.len(), if hits.len() == 1 { "" } else { "s" });
        for f in &hits {
            let version = f.version.as_deref().map(|v| format!(" {v}")).unwrap_or_default();
            let process = match (f.pid, &f.process) {
                (Some(pid), Some(name)) => format!("pid {pid} ({name})"),
                (Some(pid), None) => format!("pid {pid}"),
                _ => "process not found".into(),
            };
            let models = if f.models.is_empty() { "no models listed".into() } else { f.models.join(", ") };
            eprintln!(
                "  :{:<5}  {}{version}  kind = \"{}\"  {process}  models: {models}",
                f.port,
                f.what,
                f.kind.as_str()
            );
        }
    }
    let silent: Vec<String> = misses.iter().map(|((p, who), _)| format!("{p} ({who})")).collect();
    if !hits.is_empty() && !silent.is_empty() {
        eprintln!("Nothing answered on: {}", silent.join(", "));
    }
    eprintln!(
        "\nThe mlx-lm kind (mlx_lm in a worker soakd starts, no server) cannot be discovered: \
         configure it with kind = \"mlx-lm\", python and model (README.md, \"Backends\")."
    );
    hits
}

fn port_list(ports: &[(u16, &str)]) -> String {
    ports.iter().map(|(p, _)| p.to_string()).collect::<Vec<_>>().join(", ")
}
