//! The `[metrics]` table: where the daemon serves Prometheus's `/metrics`, and the bearer token
//! that guards it off this machine. Off unless the table is there. A non-loopback `listen`
//! without `bearer_token_env` or `bearer_token_file` is refused: the endpoint names the servers
//! soakd measures and how they fail, which is nobody else's business by default.

use crate::fields::{Fields, Place, Problem};
use crate::secrets::Source;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The port README's scrape config uses (OpenTelemetry's Prometheus exporter port).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

/// `[metrics]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
    /// Required off loopback: a scrape without `Authorization: Bearer <token>` gets 401.
    pub token: Option<Source>,
    /// How often the latest analysis (leak, wedged) behind the gauges is recomputed.
    pub analysis_every: Duration,
    /// The window that analysis looks back over.
    pub analysis_window: Duration,
}

/// Parses `[metrics]`; a relative `bearer_token_file` resolves against `base`.
pub fn parse(table: toml::Table, path: &Path, base: &Path, problems: &mut Vec<Problem>) -> Option<MetricsConfig> {
    let mut f = Fields::new(table, Place::entry(path, "[metrics]".into()), problems);
    let listen_text: String = f.take("listen").unwrap_or_else(|| DEFAULT_LISTEN.into());
    let listen = listen_text
        .parse::<SocketAddr>()
        .map_err(|_| {
            f.problem(
                "listen",
                format!("\"{listen_text}\" is not an address and port; give e.g. \"{DEFAULT_LISTEN}\" (an IP address, not a host name)"),
            )
        })
        .ok();
    let token = super::secret_source(
        &mut f,
        base,
        &super::SecretFields {
            env: "bearer_token_env",
            file: "bearer_token_file",
            inline: "bearer_token",
            noun: "token",
        },
    );
    let every: f64 = f.take("analysis_every_s").unwrap_or(300.0);
    if !(10.0..=86_400.0).contains(&every) {
        f.problem("analysis_every_s", format!("must be between 10 and 86400 seconds, not {every}"));
    }
    let window: f64 = f.take("analysis_window_h").unwrap_or(24.0);
    if !(0.1..=2_400.0).contains(&window) {
        f.problem("analysis_window_h", format!("must be between 0.1 and 2400 hours, not {window}"));
    }
    if let Some(addr) = listen
        && !addr.ip().is_loopback()
        && token.is_none()
    {
        f.problem(
            "listen",
            format!(
                "{addr} can be reached from other machines, so /metrics needs a token: set bearer_token_env = \"NAME\" or bearer_token_file = \"PATH\" (chmod 600), or listen on 127.0.0.1"
            ),
        );
    }
    f.finish();
    Some(MetricsConfig {
        listen: listen?,
        token,
        analysis_every: Duration::from_secs_f64(every.clamp(10.0, 86_400.0)),
        analysis_window: Duration::from_secs_f64(window.clamp(0.1, 2_400.0) * 3600.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> (Option<MetricsConfig>, Vec<String>) {
        let mut problems = Vec::new();
        let c = parse(text.parse().unwrap(), Path::new("/c/c.toml"), Path::new("/c"), &mut problems);
        (c, problems.iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn defaults_to_loopback_without_a_token() {
        let (c, p) = parsed("");
        assert!(p.is_empty(), "{p:?}");
        let c = c.unwrap();
        assert_eq!((c.listen.to_string(), c.token, c.analysis_every.as_secs()), (DEFAULT_LISTEN.into(), None, 300));
    }

    #[test]
    fn off_loopback_a_token_is_required() {
        let (_, p) = parsed("listen = \"0.0.0.0:9464\"");
        assert!(p[0].contains("[metrics]: field `listen`: 0.0.0.0:9464 can be reached from other machines"), "{p:?}");
        let (c, p) = parsed("listen = \"0.0.0.0:9464\"\nbearer_token_file = \"token\"");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.unwrap().token, Some(Source::File("/c/token".into())));
        let (_, p) = parsed("listen = \"[::]:9464\"\nbearer_token_env = \"T\"");
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn mistakes_name_the_field_and_the_fix() {
        let (_, p) = parsed("listen = \"localhost:9464\"\nbearer_token = \"abc\"\nanalysis_every_s = 1");
        let all = p.join("\n");
        assert!(all.contains("field `listen`: \"localhost:9464\" is not an address and port"), "{all}");
        assert!(all.contains("field `bearer_token`: the token never goes in the config file"), "{all}");
        assert!(all.contains("field `analysis_every_s`: must be between 10 and 86400"), "{all}");
    }
}
