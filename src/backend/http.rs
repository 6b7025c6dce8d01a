//! The HTTP side every server adapter shares: the two clients (pooled and one-shot), the
//! bearer token from `api_key_env`, URLs under the configured base, and the side-endpoint
//! client (`side::Side`) for the same server.

use super::BackendError;
use super::side::Side;
use crate::config::BackendConfig;
use crate::schedule::Timeouts;
use crate::text::bounded;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Client, RequestBuilder, Url};
use serde_json::Value;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// After a pooled connection is found closed, this many requests go on new connections before
/// the pool is tried again (`Http::found_closed`).
pub(crate) const FRESH_AFTER_CLOSED: u32 = 100;

pub(crate) struct Http {
    /// One pool per measuring thread (`crate::threads`): a connection is read on the thread
    /// that opened it.
    pooled: Vec<Client>,
    fresh: Client,
    reuse: bool,
    /// First attempts still to send on new connections: a server that closes its connections
    /// after a reply is not sent into a closing one again and again.
    fresh_left: AtomicU32,
    auth: Option<HeaderValue>,
    side: Side,
    pub(crate) timeouts: Timeouts,
}

impl Http {
    pub(crate) fn new(config: &BackendConfig, timeouts: &Timeouts) -> Result<Self, BackendError> {
        let auth = super::bearer(config)?;
        let build = |pool: bool| {
            let b = Client::builder()
                .connect_timeout(timeouts.connect)
                .user_agent(concat!("soakd/", env!("CARGO_PKG_VERSION")))
                // A redirect is the server's answer, recorded as it is (`http_error` with its
                // Location), never followed to another port or host.
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy();
            let b = if pool { b.pool_idle_timeout(Duration::from_secs(30)) } else { b.pool_max_idle_per_host(0) };
            b.build().map_err(|err| BackendError::Client { backend: config.name.clone(), err })
        };
        Ok(Http {
            pooled: (0..crate::threads::count()).map(|_| build(true)).collect::<Result<_, _>>()?,
            fresh: build(false)?,
            reuse: config.reuse_connections,
            fresh_left: AtomicU32::new(0),
            auth,
            side: Side::new(config)?,
            timeouts: *timeouts,
        })
    }

    /// `path` under the base URL (which may itself have a path, behind a proxy).
    pub(crate) fn url(&self, path: &str) -> Url {
        self.side.url(path)
    }

    /// Whether pooled connections are reused (`reuse_connections`).
    pub(crate) fn reuses(&self) -> bool {
        self.reuse
    }

    /// The client for an attempt: pooled for a first attempt when reuse is on and no pooled
    /// connection was found closed in the last `FRESH_AFTER_CLOSED` requests, else a new
    /// connection.
    pub(crate) fn client(&self, first_attempt: bool) -> &Client {
        let pooled = self.reuse
            && first_attempt
            && self.fresh_left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_err();
        if pooled { &self.pooled[crate::threads::current() % self.pooled.len()] } else { &self.fresh }
    }

    /// A pooled connection turned out closed by the server (the reuse race): the next
    /// `FRESH_AFTER_CLOSED` requests open their own. llama-server closes every streamed
    /// connection, so reusing them would cost most requests a wasted attempt.
    pub(crate) fn found_closed(&self) {
        self.fresh_left.store(FRESH_AFTER_CLOSED, Ordering::Relaxed);
    }

    /// A POST of `body` to `url`, with the bearer token when one is configured.
    pub(crate) fn post(&self, client: &Client, url: Url, body: &Value) -> RequestBuilder {
        self.authorized(client.post(url).json(body))
    }

    fn authorized(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.auth {
            Some(auth) => request.header(AUTHORIZATION, auth.clone()),
            None => request,
        }
    }

    /// The side-endpoint client (same base URL and token).
    pub(crate) fn side(&self) -> &Side {
        &self.side
    }
}

/// A string from untrusted JSON, bounded, or `None`.
pub(crate) fn short_str(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(|s| bounded(s, 256))
}

/// A backend entry for unit tests.
#[cfg(test)]
pub(crate) fn test_config(kind: crate::config::BackendKind, url: &str, model: Option<&str>) -> BackendConfig {
    BackendConfig {
        name: "t".into(),
        kind,
        url: Url::parse(url).expect("test URL"),
        model: model.map(str::to_string),
        api_key_env: None,
        process: crate::config::ProcessSelector::None,
        reuse_connections: true,
        log: None,
        python: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BackendKind;

    #[test]
    fn urls_keep_the_base_path() {
        let config = test_config(BackendKind::LmStudio, "http://127.0.0.1:1234/proxy/", None);
        let http = Http::new(&config, &Timeouts::default()).unwrap();
        assert_eq!(http.url("/api/v0/models").as_str(), "http://127.0.0.1:1234/proxy/api/v0/models");
        let config = test_config(BackendKind::Ollama, "http://127.0.0.1:11434", None);
        let http = Http::new(&config, &Timeouts::default()).unwrap();
        assert_eq!(http.url("/api/ps").as_str(), "http://127.0.0.1:11434/api/ps");
    }

    #[test]
    fn after_a_closed_pooled_connection_the_next_requests_open_their_own() {
        let config = test_config(BackendKind::OpenAi, "http://127.0.0.1:8080", None);
        let http = Http::new(&config, &Timeouts::default()).unwrap();
        let pooled = |c: &Client| std::ptr::eq(c, &http.pooled[0]);
        assert!(pooled(http.client(true)) && !pooled(http.client(false)), "a retry never reuses");
        http.found_closed();
        let fresh = (0..FRESH_AFTER_CLOSED).filter(|_| !pooled(http.client(true))).count();
        assert_eq!(fresh, FRESH_AFTER_CLOSED as usize);
        assert!(pooled(http.client(true)), "then the pool is tried again");
        let never = Http::new(&BackendConfig { reuse_connections: false, ..config }, &Timeouts::default()).unwrap();
        assert!(!std::ptr::eq(never.client(true), &never.pooled[0]), "reuse_connections = false");
    }
}
