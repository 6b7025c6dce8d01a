//! The secrets soakd was given, and the one scrubber that everything it stores, logs, prints or
//! mails passes through.
//!
//! A secret is remembered where soakd reads it (an `api_key_env` variable when a backend is
//! connected, the SMTP password when a mail is sent); from then on `scrub` replaces it with
//! `[redacted]` wherever it appears — also JSON-escaped — so a server that echoes the request's
//! headers (proxies and some servers do, in a 401's body) cannot put the key into the log. Values
//! shaped like credentials are masked whoever they belong to: `Authorization: …`, `Bearer …`,
//! `api_key=…`, `"password": "…"`. The store's writer, the logger's writers and the mail builder
//! call `scrub`; nothing else needs to.

use regex::{Captures, Regex};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, RwLock};

/// What a secret is replaced by.
pub const REDACTED: &str = "[redacted]";
/// Shorter values are not treated as secrets: masking every "abc" would wreck the text.
const MIN_SECRET_LEN: usize = 4;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// `Bearer <token>` / `Basic <token>` anywhere.
static SCHEME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=\-]{4,}").expect("a valid pattern"));

/// `authorization: …`, `"api_key": "…"`, `x-api-key=…`, `password: …` (headers, JSON, query strings).
static CREDENTIAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)\b((?:proxy-)?authorization|x-api-key|api[_-]?key|access[_-]?token|password|secret)(\\?"?\s*[:=]\s*\\?"?)((?:bearer|basic|token)\s+)?[^\s"',;}&\\]{4,}"#,
    )
    .expect("a valid pattern")
});

/// Remembers a secret: from now on it is scrubbed from everything soakd writes.
pub fn remember(secret: &str) {
    if secret.len() < MIN_SECRET_LEN {
        return;
    }
    let mut known = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    let escaped = serde_json::to_string(secret).map(|s| s[1..s.len() - 1].to_string()).unwrap_or_default();
    for s in [secret.to_string(), escaped] {
        if s.len() >= MIN_SECRET_LEN && !known.contains(&s) {
            known.push(s);
        }
    }
    // Longest first, so a secret that contains another is replaced whole.
    known.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `text` with every remembered secret and every credential-shaped value replaced by `[redacted]`.
/// Borrows when there is nothing to replace (the common case costs one scan per pattern).
pub fn scrub(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    {
        let known = SECRETS.read().unwrap_or_else(|e| e.into_inner());
        for secret in known.iter() {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
            }
        }
    }
    // `replace_all` borrows when nothing matched: one scan per pattern, a copy only on a match.
    if let Cow::Owned(replaced) = SCHEME.replace_all(&out, format!("${{1}}${{2}}{REDACTED}").as_str()) {
        out = Cow::Owned(replaced);
    }
    let credential = |c: &Captures| format!("{}{}{}{REDACTED}", &c[1], &c[2], c.get(3).map_or("", |m| m.as_str()));
    if let Cow::Owned(replaced) = CREDENTIAL.replace_all(&out, credential) {
        out = Cow::Owned(replaced);
    }
    out
}

/// Where a secret comes from: never the config file itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The name of an environment variable.
    Env(String),
    /// A file readable by its owner only (its first line is the secret).
    File(PathBuf),
}

/// Why a secret could not be read; `what` names it ("SMTP password"), `field` the config field
/// that points at it. The messages never hold the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the {what} variable ${var} is not set or empty ({field} in the config names it)")]
    EnvMissing { what: &'static str, field: &'static str, var: String },
    #[error("cannot read the {what} file {path}: {err}")]
    FileRead { what: &'static str, path: PathBuf, err: std::io::Error },
    #[error(
        "the {what} file {path} can be read by other users (mode {mode:03o}); soakd refuses to use it. Fix it with: chmod 600 {path}"
    )]
    FileOpen { what: &'static str, path: PathBuf, mode: u32 },
    #[error("the {what} file {path} is empty")]
    FileEmpty { what: &'static str, path: PathBuf },
}

/// Reads a secret and remembers it (from then on it is scrubbed from everything soakd writes).
/// `what` names it in errors; `env_field` is the config field naming a variable.
pub fn read(source: &Source, what: &'static str, env_field: &'static str) -> Result<String, SecretError> {
    let secret = match source {
        Source::Env(var) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => v,
            _ => return Err(SecretError::EnvMissing { what, field: env_field, var: var.clone() }),
        },
        Source::File(path) => read_file(path, what)?,
    };
    remember(&secret);
    Ok(secret)
}

fn read_file(path: &Path, what: &'static str) -> Result<String, SecretError> {
    let read_err = |err| SecretError::FileRead { what, path: path.to_path_buf(), err };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecretError::FileOpen { what, path: path.to_path_buf(), mode });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r').to_string();
    if line.is_empty() {
        return Err(SecretError::FileEmpty { what, path: path.to_path_buf() });
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_secret_is_gone_in_any_text_even_json_escaped() {
        remember("sk-test-Zq8\"w\\3kL9");
        let echoed = r#"{"error":"bad key","you_sent":"sk-test-Zq8\"w\\3kL9"} and raw sk-test-Zq8"w\3kL9"#;
        let clean = scrub(echoed);
        assert!(!clean.contains("Zq8"), "{clean}");
        assert_eq!(clean.matches(REDACTED).count(), 2, "{clean}");
    }

    #[test]
    fn credential_shaped_values_are_masked_whoever_owns_them() {
        for (text, gone) in [
            ("401: headers were Authorization: Bearer abc.def-ghi_123", "abc.def"),
            (r#"{"headers":{"authorization":"Bearer eyJhbGciOi"}}"#, "eyJhbGciOi"),
            ("GET /v1/models?api_key=s3cr3tvalue&x=1", "s3cr3tvalue"),
            (r#"{\"x-api-key\": \"k-998877\"}"#, "k-998877"),
            ("proxy said: password=hunter22", "hunter22"),
            ("token bearer QWERTY12", "QWERTY12"),
        ] {
            let clean = scrub(text);
            assert!(!clean.contains(gone) && clean.contains(REDACTED), "{text} → {clean}");
        }
    }

    #[test]
    fn ordinary_text_is_borrowed_untouched() {
        let text = "HTTP 503: {\"error\":\"Loading model\"} after 1200 ms";
        assert!(matches!(scrub(text), Cow::Borrowed(_)));
        assert_eq!(scrub("[redacted] stays [redacted]"), "[redacted] stays [redacted]");
    }
}
