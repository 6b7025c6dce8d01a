//! Sending what the outbox holds over SMTP (lettre, tokio): STARTTLS (required, never
//! optional), implicit TLS, or plaintext to a relay on this machine. The password is read when a
//! mail is sent — from the variable `password_env` names, or from `password_file`, which must be
//! readable by its owner only — and never logged or stored.

use crate::config::mail::{SmtpConfig, Tls};
use crate::secrets::{SecretError, Source};
use crate::store::outbox;
use lettre::address::{Address, Envelope};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use rusqlite::Connection;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Password(#[from] SecretError),
    #[error(
        "the SMTP server {server} refused the login as \"{user}\": {detail}. Check [smtp] username and the password"
    )]
    Auth { server: String, user: String, detail: String },
    #[error("sending to {server} failed: {detail}")]
    Smtp { server: String, detail: String },
    #[error("the outbox row has an invalid address: {0}")]
    Address(String),
}

impl SendError {
    /// Errors that another try cannot fix without the user (the message stays in the outbox).
    pub fn needs_the_user(&self) -> bool {
        !matches!(self, SendError::Smtp { .. })
    }
}

/// The SMTP password, if one is configured.
pub fn password(source: Option<&Source>) -> Result<Option<String>, SendError> {
    let Some(source) = source else { return Ok(None) };
    Ok(Some(crate::secrets::read(source, "SMTP password", "[smtp] password_env")?))
}

/// A connected-on-demand SMTP client for the `[smtp]` table.
pub struct Sender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    server: String,
    user: Option<String>,
}

impl Sender {
    pub fn new(cfg: &SmtpConfig) -> Result<Sender, SendError> {
        let server = format!("{}:{} ({})", cfg.host, cfg.port, cfg.tls.as_str());
        let smtp_err =
            |e: lettre::transport::smtp::Error| SendError::Smtp { server: server.clone(), detail: e.to_string() };
        let builder = match cfg.tls {
            Tls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.host).map_err(smtp_err)?,
            Tls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.host).map_err(smtp_err)?,
            Tls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host),
        };
        let mut builder = builder.port(cfg.port).timeout(Some(cfg.timeout));
        if let (Some(user), Some(pass)) = (&cfg.username, password(cfg.password.as_ref())?) {
            builder = builder.credentials(Credentials::new(user.clone(), pass));
        }
        Ok(Sender { transport: builder.build(), server, user: cfg.username.clone() })
    }

    /// Sends one stored message as it is.
    pub async fn send(&self, mail: &outbox::Pending) -> Result<(), SendError> {
        let parse = |s: &str| s.parse::<Address>().map_err(|e| SendError::Address(format!("{s}: {e}")));
        let to: Vec<Address> = mail.envelope_to.iter().map(|s| parse(s)).collect::<Result<_, _>>()?;
        let from = if mail.envelope_from.is_empty() { None } else { Some(parse(&mail.envelope_from)?) };
        let envelope = Envelope::new(from, to).map_err(|e| SendError::Address(e.to_string()))?;
        match self.transport.send_raw(&envelope, &mail.message).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let code = e.status().map(|c| c.to_string());
                let detail = crate::text::bounded(&crate::text::printable(&error_chain(&e)), 500);
                if let (Some("535" | "534" | "530" | "538"), Some(user)) = (code.as_deref(), &self.user) {
                    return Err(SendError::Auth { server: self.server.clone(), user: user.clone(), detail });
                }
                Err(SendError::Smtp { server: self.server.clone(), detail })
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// What one pass over the outbox did.
#[derive(Debug, Default)]
pub struct Flushed {
    pub sent: Vec<(i64, String)>,
    /// (id, subject, why) of those left in the outbox.
    pub failed: Vec<(i64, String, String)>,
}

/// Sends the pending mails (those due when `due_only`), each at most once: claimed first, marked
/// sent as soon as the server accepted it, or given its next try after a backoff.
pub async fn flush(db: &Path, cfg: &SmtpConfig, due_only: bool) -> anyhow::Result<Flushed> {
    let now = crate::time::now_ms();
    let pending = {
        let mut conn = crate::store::open(db)?;
        match outbox::pending(&conn)? {
            (0, _) => Vec::new(),
            (_, Some(next)) if due_only && next > now => Vec::new(),
            _ => outbox::claim(&mut conn, now, due_only)?,
        }
    };
    let mut done = Flushed::default();
    if pending.is_empty() {
        return Ok(done);
    }
    let sender = Sender::new(cfg);
    let conn: Connection = crate::store::open(db)?;
    for mail in &pending {
        let result = match &sender {
            Ok(s) => s.send(mail).await,
            Err(e) => Err(SendError::Smtp { server: cfg.host.clone(), detail: e.to_string() }),
        };
        let now = crate::time::now_ms();
        match result {
            Ok(()) => {
                outbox::mark_sent(&conn, mail.id, now)?;
                tracing::info!(id = mail.id, kind = %mail.kind, "mail sent");
                done.sent.push((mail.id, mail.subject.clone()));
            }
            Err(e) => {
                let why = match &sender {
                    Err(setup) => setup.to_string(),
                    Ok(_) => e.to_string(),
                };
                let next = outbox::mark_failed(&conn, mail.id, now, &why, rand::random::<f64>())?;
                tracing::warn!(id = mail.id, attempts = mail.attempts + 1, next_try = %crate::report::window::utc(next), "mail not sent: {why}");
                done.failed.push((mail.id, mail.subject.clone(), why));
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_password_file_others_can_read_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("smtp-password");
        std::fs::write(&path, "s3cret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = password(Some(&Source::File(path.clone()))).unwrap_err().to_string();
        assert!(e.contains("mode 644") && e.contains(&format!("chmod 600 {}", path.display())), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(password(Some(&Source::File(path.clone()))).is_err(), "group-readable is refused too");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(password(Some(&Source::File(path))).unwrap().as_deref(), Some("s3cret"));
    }

    #[test]
    fn a_missing_variable_names_itself_not_a_value() {
        let e = password(Some(&Source::Env("SOAKD_TEST_SURELY_UNSET_VAR".into()))).unwrap_err().to_string();
        assert!(e.contains("$SOAKD_TEST_SURELY_UNSET_VAR is not set"), "{e}");
        assert_eq!(password(None).unwrap(), None);
    }
}
