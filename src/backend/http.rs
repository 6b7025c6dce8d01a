//! The HTTP side every server adapter shares: the two clients (pooled and one-shot), the
//! bearer token from `api_key_env`, URLs under the configured base, and bounded `GET`s of a
//! server's JSON side endpoints (LM Studio's `/api/v0/models`, Ollama's `/api/ps`).

use super::BackendError;
use crate::config::BackendConfig;
use crate::schedule::Timeouts;
use crate::text::bounded;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Client, RequestBuilder, Response, Url};
use serde_json::Value;
use std::time::Duration;

/// The most of a side endpoint's answer soakd reads (a model list, `/api/ps`).
pub(crate) const MAX_SIDE_BYTES: usize = 256 * 1024;

/// How long one side request may take (the runner bounds the whole question as well).
const SIDE_TIMEOUT: Duration = Duration::from_secs(4);

pub(crate) struct Http {
    base: Url,
    pooled: Client,
    fresh: Client,
    reuse: bool,
    auth: Option<HeaderValue>,
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
            base: config.url.clone(),
            pooled: build(true)?,
            fresh: build(false)?,
            reuse: config.reuse_connections,
            auth,
            timeouts: *timeouts,
        })
    }

    /// `path` under the base URL (which may itself have a path, behind a proxy).
    pub(crate) fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        url.set_path(&format!("{}{path}", self.base.path().trim_end_matches('/')));
        url
    }

    /// Whether pooled connections are reused (`reuse_connections`).
    pub(crate) fn reuses(&self) -> bool {
        self.reuse
    }

    /// The client for an attempt: pooled for a first attempt when reuse is on, else a new
    /// connection.
    pub(crate) fn client(&self, first_attempt: bool) -> &Client {
        if self.reuse && first_attempt { &self.pooled } else { &self.fresh }
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

    /// `GET path` as JSON, bounded in size and time. The error is a sentence for an event's
    /// detail (the status and the start of the body, or the transport's words).
    pub(crate) async fn get_json(&self, url: Url) -> Result<Value, String> {
        let path = url.path().to_string();
        let request = self.authorized(self.pooled.get(url).timeout(SIDE_TIMEOUT));
        let response = request
            .send()
            .await
            .map_err(|e| format!("GET {path}: {}", super::openai::error_chain(&e.without_url())))?;
        let status = response.status();
        let (bytes, complete) = read_bounded(response, MAX_SIDE_BYTES)
            .await
            .map_err(|e| format!("GET {path}: {}", super::openai::error_chain(&e.without_url())))?;
        let text = String::from_utf8_lossy(&bytes);
        if !status.is_success() {
            return Err(bounded(&format!("GET {path}: HTTP {}: {}", status.as_u16(), text.trim()), 512));
        }
        if !complete {
            return Err(format!("GET {path}: the answer is over {MAX_SIDE_BYTES} bytes"));
        }
        serde_json::from_slice(&bytes).map_err(|e| bounded(&format!("GET {path}: not JSON ({e}): {text}"), 512))
    }
}

/// Reads at most `max` bytes of a body; `complete` is false when there was more.
pub(crate) async fn read_bounded(mut response: Response, max: usize) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut buf = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if buf.len() + chunk.len() > max {
            buf.extend_from_slice(&chunk[..max - buf.len()]);
            return Ok((buf, false));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((buf, true))
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
}
