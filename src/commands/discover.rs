//! `soakd discover`: looks at the well-known local ports (and any given) and prints what answers
//! there, with `[[backend]]` entries to paste into the config.

use crate::discover::{self, WELL_KNOWN};
use futures_util::future::join_all;
use std::process::ExitCode;
use std::time::Duration;

pub async fn run(host: &str, extra_ports: &[u16], timeout: Duration) -> anyhow::Result<ExitCode> {
    let mut ports: Vec<(u16, &str)> = WELL_KNOWN.to_vec();
    for p in extra_ports {
        if !ports.iter().any(|(known, _)| known == p) {
            ports.push((*p, "--port"));
        }
    }
    let found: Vec<_> = join_all(ports.iter().map(|(p, _)| discover::probe(host, *p, timeout))).await;
    let (hits, misses): (Vec<_>, Vec<_>) = ports.iter().zip(found).partition(|(_, f)| f.is_some());
    let hits: Vec<discover::Found> = hits.into_iter().filter_map(|(_, f)| f).collect();
    if hits.is_empty() {
        println!("No LLM server answered on {host} (ports {}).", port_list(&ports));
    } else {
        println!("Found {} server{} on {host}:", hits.len(), if hits.len() == 1 { "" } else { "s" });
        for f in &hits {
            let version = f.version.as_deref().map(|v| format!(" {v}")).unwrap_or_default();
            let process = match (f.pid, &f.process) {
                (Some(pid), Some(name)) => format!("pid {pid} ({name})"),
                (Some(pid), None) => format!("pid {pid}"),
                _ => "process not found".into(),
            };
            let models = if f.models.is_empty() { "no models listed".into() } else { f.models.join(", ") };
            println!(
                "  :{:<5}  {}{version}  kind = \"{}\"  {process}  models: {models}",
                f.port,
                f.what,
                f.kind.as_str()
            );
        }
    }
    let silent: Vec<String> = misses.iter().map(|((p, who), _)| format!("{p} ({who})")).collect();
    if !hits.is_empty() && !silent.is_empty() {
        println!("Nothing answered on: {}", silent.join(", "));
    }
    println!(
        "\nThe mlx-lm kind (mlx_lm in a worker soakd starts, no server) cannot be discovered: \
         configure it with kind = \"mlx-lm\", python and model (README.md, \"Backends\")."
    );
    if !hits.is_empty() {
        println!("\n# Paste into your config file:\n\n{}", discover::entries(&hits).trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

fn port_list(ports: &[(u16, &str)]) -> String {
    ports.iter().map(|(p, _)| p.to_string()).collect::<Vec<_>>().join(", ")
}
