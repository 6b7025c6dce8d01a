//! The `[smtp]`, `[digest]` and `[alerts]` tables of the config file (used by `digest`): where mail goes and how it
//! is sent. The password itself is never in the file: `password_env` names a variable,
//! `password_file` a file that only its owner may read; both are read when a mail is sent.

use crate::fields::{Fields, Place, Problem};
use lettre::message::Mailbox;
use std::path::Path;
use std::time::Duration;

/// What the config says about mail. `smtp: None`: no mail is sent (digests can still be printed).
#[derive(Debug, Clone, Default)]
pub struct MailConfig {
    pub smtp: Option<SmtpConfig>,
    pub digest: DigestConfig,
    pub alerts: Option<AlertConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// Connect in plaintext, then upgrade with STARTTLS (required, never optional); port 587.
    StartTls,
    /// TLS from the first byte ("implicit TLS", SMTPS); port 465.
    Tls,
    /// No encryption: only for a relay on this machine (127.0.0.1, ::1, localhost); port 25.
    None,
}

impl Tls {
    pub fn as_str(self) -> &'static str {
        match self {
            Tls::StartTls => "starttls",
            Tls::Tls => "tls",
            Tls::None => "none",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub username: Option<String>,
    /// Where the password comes from (`None`: no login password).
    pub password: Option<crate::secrets::Source>,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    /// For connecting and for each SMTP command.
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DigestConfig {
    /// The longest window one digest covers (when the previous digest is older than that, or
    /// there is none, the digest covers this much).
    pub max_window: Duration,
    /// The window of the first digest (no previous one).
    pub first_window: Duration,
}

impl Default for DigestConfig {
    fn default() -> Self {
        DigestConfig { max_window: Duration::from_secs(7 * 86_400), first_window: Duration::from_secs(86_400) }
    }
}

/// Immediate alerts: a short mail at once, between digests.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertConfig {
    /// A backend whose latest requests failed this many times in a row.
    pub crash_streak: u64,
    /// A leak that would use up the machine's memory within this long.
    pub exhaust_within: Duration,
    /// The least time between two alerts about the same thing.
    pub remind_every: Duration,
    /// How often the daemon looks.
    pub check_every: Duration,
}

/// Parses the three tables (each optional); problems are added to `problems`.
pub fn parse(
    smtp: Option<toml::Table>,
    digest: Option<toml::Table>,
    alerts: Option<toml::Table>,
    path: &Path,
    problems: &mut Vec<Problem>,
) -> MailConfig {
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let smtp = smtp.and_then(|t| parse_smtp(t, path, &base, problems));
    let digest = digest.map(|t| parse_digest(t, path, problems)).unwrap_or_default();
    let alerts = alerts.and_then(|t| parse_alerts(t, path, problems));
    if alerts.is_some() && smtp.is_none() {
        problems.push(Place::entry(path, "[alerts]".into()).problem(None, "alerts are mailed: add an [smtp] table"));
    }
    MailConfig { smtp, digest, alerts }
}

fn parse_smtp(table: toml::Table, path: &Path, base: &Path, problems: &mut Vec<Problem>) -> Option<SmtpConfig> {
    let mut f = Fields::new(table, Place::entry(path, "[smtp]".into()), problems);
    let host: Option<String> = f.require("host", "the mail server's name, e.g. host = \"smtp.fastmail.com\"");
    let tls = match f.take::<String>("tls").as_deref() {
        None | Some("starttls") => Some(Tls::StartTls),
        Some("tls") => Some(Tls::Tls),
        Some("none") => Some(Tls::None),
        Some(other) => {
            f.problem(
                "tls",
                format!(
                    "\"{other}\": use \"starttls\" (port 587), \"tls\" (465) or \"none\" (a relay on this machine)"
                ),
            );
            None
        }
    };
    let port: Option<u16> = f.take("port");
    if port == Some(0) {
        f.problem("port", "0 is not a port; give 1–65535 (587 for starttls, 465 for tls), or leave it out");
    }
    let username: Option<String> = f.take("username");
    let password = super::secret_source(
        &mut f,
        base,
        &super::SecretFields { env: "password_env", file: "password_file", inline: "password", noun: "password" },
    );
    let from = f.require::<String>("from", "the sender, e.g. from = \"soakd <soakd@example.com>\"").and_then(|s| {
        s.parse::<Mailbox>().map_err(|e| f.problem("from", format!("\"{s}\" is not a mail address ({e})"))).ok()
    });
    let to_raw: Option<Vec<String>> = f.require("to", "the recipients, e.g. to = [\"me@example.com\"]");
    if to_raw.as_ref().is_some_and(Vec::is_empty) {
        f.problem("to", "name at least one recipient");
    }
    let to_raw = to_raw.unwrap_or_default();
    let secs: f64 = f.take("timeout_s").unwrap_or(30.0);
    if !(1.0..=600.0).contains(&secs) {
        f.problem("timeout_s", format!("must be between 1 and 600 seconds, not {secs}"));
    }
    let mut to = Vec::new();
    for s in &to_raw {
        match s.parse::<Mailbox>() {
            Ok(m) => to.push(m),
            Err(e) => f.problem("to", format!("\"{s}\" is not a mail address ({e})")),
        }
    }
    if username.is_none() && password.is_some() {
        f.problem("username", "a password is set but no username to log in with");
    }
    if let (Some(host), Some(Tls::None)) = (&host, tls)
        && !is_loopback(host)
    {
        f.problem(
            "tls",
            format!("\"none\" sends mail (and any password) unencrypted, so it is only allowed for a relay on this machine (127.0.0.1, ::1, localhost), not \"{host}\"; use \"starttls\" or \"tls\""),
        );
    }
    if let Some(h) = &host
        && (h.is_empty() || h.contains(['/', ':', ' ']))
    {
        f.problem("host", format!("\"{h}\": give the host name alone (the port goes in `port`)"));
    }
    f.finish();
    let tls = tls?;
    let port = port.unwrap_or(match tls {
        Tls::StartTls => 587,
        Tls::Tls => 465,
        Tls::None => 25,
    });
    if to.is_empty() || to.len() != to_raw.len() {
        return None;
    }
    Some(SmtpConfig {
        host: host?,
        port,
        tls,
        username,
        password,
        from: from?,
        to,
        timeout: Duration::from_secs_f64(secs.clamp(1.0, 600.0)),
    })
}

fn parse_digest(table: toml::Table, path: &Path, problems: &mut Vec<Problem>) -> DigestConfig {
    let mut f = Fields::new(table, Place::entry(path, "[digest]".into()), problems);
    let mut d = DigestConfig::default();
    if let Some(h) = f.take::<f64>("max_window_h") {
        if (1.0..=2160.0).contains(&h) {
            d.max_window = Duration::from_secs_f64(h * 3600.0);
        } else {
            f.problem("max_window_h", format!("must be between 1 and 2160 hours, not {h}"));
        }
    }
    if let Some(h) = f.take::<f64>("first_window_h") {
        if (1.0..=2160.0).contains(&h) {
            d.first_window = Duration::from_secs_f64(h * 3600.0);
        } else {
            f.problem("first_window_h", format!("must be between 1 and 2160 hours, not {h}"));
        }
    }
    f.finish();
    d
}

fn parse_alerts(table: toml::Table, path: &Path, problems: &mut Vec<Problem>) -> Option<AlertConfig> {
    let mut f = Fields::new(table, Place::entry(path, "[alerts]".into()), problems);
    let enabled: bool = f.take("enabled").unwrap_or(true);
    let crash_streak: u64 = f.take("crash_streak").unwrap_or(10);
    if crash_streak == 0 {
        f.problem("crash_streak", "must be at least 1");
    }
    let hours = |f: &mut Fields<'_>, key: &'static str, default: f64| {
        let h: f64 = f.take(key).unwrap_or(default);
        if !(0.01..=720.0).contains(&h) {
            f.problem(key, format!("must be between 0.01 and 720 hours, not {h}"));
        }
        Duration::from_secs_f64(h.clamp(0.01, 720.0) * 3600.0)
    };
    let exhaust_within = hours(&mut f, "exhaust_within_h", 24.0);
    let remind_every = hours(&mut f, "remind_every_h", 6.0);
    let check_every = hours(&mut f, "check_every_h", 0.25);
    f.finish();
    enabled.then_some(AlertConfig { crash_streak, exhaust_within, remind_every, check_every })
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> (MailConfig, Vec<String>) {
        let mut t: toml::Table = text.parse().unwrap();
        let mut problems = Vec::new();
        let c = parse(
            t.remove("smtp").and_then(|v| v.as_table().cloned()),
            t.remove("digest").and_then(|v| v.as_table().cloned()),
            t.remove("alerts").and_then(|v| v.as_table().cloned()),
            Path::new("/etc/soakd/config.toml"),
            &mut problems,
        );
        (c, problems.iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn a_full_smtp_table() {
        let (c, p) = parse_text(
            r#"[smtp]
            host = "smtp.example.com"
            username = "me"
            password_file = "smtp-password"
            from = "soakd <soakd@example.com>"
            to = ["me@example.com", "Ops <ops@example.com>"]
            [digest]
            max_window_h = 48"#,
        );
        assert!(p.is_empty(), "{p:?}");
        let s = c.smtp.unwrap();
        assert_eq!((s.port, s.tls), (587, Tls::StartTls));
        assert_eq!(s.password, Some(crate::secrets::Source::File("/etc/soakd/smtp-password".into())));
        assert_eq!(s.to.len(), 2);
        assert_eq!(c.digest.max_window, Duration::from_secs(48 * 3600));
    }

    #[test]
    fn every_mistake_is_reported() {
        let (c, p) = parse_text(
            r#"[smtp]
            host = "mail.example.com"
            tls = "none"
            password = "hunter2"
            password_env = "X"
            from = "not an address"
            to = ["ok@example.com", "bad"]
            [alerts]
            crash_streak = 0"#,
        );
        assert!(c.smtp.is_none());
        let has = |s: &str| p.iter().any(|l| l.contains(s));
        assert!(has("[smtp]: field `password`: the password never goes in the config file"), "{p:#?}");
        assert!(has("field `tls`: \"none\" sends mail"), "{p:#?}");
        assert!(has("field `from`: \"not an address\""), "{p:#?}");
        assert!(has("field `to`: \"bad\""), "{p:#?}");
        assert!(has("field `username`: a password is set"), "{p:#?}");
        assert!(has("[alerts]: field `crash_streak`"), "{p:#?}");
        assert!(!p.iter().any(|l| l.contains("hunter2")), "the password is never echoed: {p:#?}");
    }

    #[test]
    fn plaintext_to_a_local_relay() {
        let (c, p) =
            parse_text("[smtp]\nhost = \"127.0.0.1\"\nport = 2525\ntls = \"none\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.smtp.unwrap().port, 2525);
    }
}
