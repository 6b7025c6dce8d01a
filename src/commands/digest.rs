//! `soakd digest`: the stability digest by hand — printed (text or HTML), written as an .eml
//! file, or stored in the outbox and sent; or only the outbox sent.

use crate::config;
use crate::digest::{run, send};
use crate::report::Window;
use crate::time::now_ms;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub enum Action {
    Print,
    Html,
    Out(PathBuf),
    Send,
    SendQueued,
}

pub async fn run(
    flag: Option<&Path>,
    db: Vec<PathBuf>,
    action: Action,
    since: Option<String>,
    until: Option<String>,
) -> anyhow::Result<ExitCode> {
    let sending = matches!(action, Action::Send | Action::SendQueued);
    // Printing needs only a database; sending needs the config's [smtp].
    let config = match (db.is_empty(), sending) {
        (false, false) => config::load(flag).ok(),
        _ => Some(
            super::load_config(flag)
                .context("reading the config (for the database and [smtp]; or name a database with --db PATH)")?,
        ),
    };
    let mail_cfg = config.as_ref().map(|c| c.mail.clone()).unwrap_or_default();
    let logs = match db.is_empty() {
        true => vec![config.as_ref().map(|c| c.db.clone()).context("no database: pass --db PATH")?],
        false => super::expand_dbs(&db)?,
    };
    // The outbox (and the previous digest the window starts from): the one log's own; with
    // several, the config's database when sending, else the first log's.
    let db = match (&logs[..], &config) {
        ([one], _) => one.clone(),
        (_, Some(c)) if sending => c.db.clone(),
        _ => logs[0].clone(),
    };
    if matches!(action, Action::SendQueued) && logs.len() > 1 {
        anyhow::bail!("--send-queued sends one database's outbox: give one --db, or none for the config's");
    }
    let now = now_ms();
    let window = match since {
        Some(s) => Some(Window::parse(Some(&s), until.as_deref(), chrono::Local::now()).map_err(anyhow::Error::msg)?),
        None => None,
    };
    match action {
        Action::Print | Action::Html | Action::Out(_) => {
            let made = tokio::task::spawn_blocking(move || {
                run::make(&db, &logs, &mail_cfg, window, now, crate::digest::How { save: false, parallel: true })
            })
            .await??;
            match action {
                Action::Print => print!("{}", made.digest.text),
                Action::Html => print!("{}", made.digest.html),
                Action::Out(file) => {
                    let bytes = made.message.formatted();
                    std::fs::write(&file, &bytes).with_context(|| format!("cannot write {}", file.display()))?;
                    eprintln!(
                        "soakd: wrote {} ({} KB, {} charts): \"{}\"",
                        file.display(),
                        bytes.len() / 1024,
                        made.digest.charts.len(),
                        made.digest.subject
                    );
                }
                _ => unreachable!("only printing actions here"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Action::Send | Action::SendQueued => {
            let smtp = mail_cfg.smtp.clone().context(
                "no [smtp] table in the config: add one (README.md, \"Digest by email\") to send mail, or use --print / --out FILE",
            )?;
            if matches!(action, Action::Send) {
                let (db2, cfg2) = (db.clone(), mail_cfg.clone());
                let (id, made) =
                    tokio::task::spawn_blocking(move || run::queue(&db2, &logs, &cfg2, now, true)).await??;
                eprintln!("soakd: digest stored in the outbox (id {id}): \"{}\"", made.digest.subject);
            }
            let done = send::flush(&db, &smtp, false).await?;
            for (id, subject) in &done.sent {
                eprintln!("soakd: sent (outbox id {id}): \"{subject}\"");
            }
            if done.sent.is_empty() && done.failed.is_empty() {
                eprintln!("soakd: the outbox holds nothing to send");
            }
            if done.failed.is_empty() {
                return Ok(ExitCode::SUCCESS);
            }
            for (id, subject, why) in &done.failed {
                eprintln!("soakd: NOT sent (outbox id {id}, \"{subject}\"): {why}");
            }
            anyhow::bail!(
                "{} mail(s) stay in the outbox of {}; the daemon retries them, or run `soakd digest --send-queued` once fixed",
                done.failed.len(),
                db.display()
            )
        }
    }
}
