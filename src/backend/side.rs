//! The side endpoints a server has beside its chat API (`/health`, `/props`, `/metrics`,
//! `/version`, LM Studio's `/api/v0/models`, Ollama's `/api/ps`): the one client for them —
//! short GETs with one time limit, bodies bounded to one size, and the same bearer token as the
//! chat requests. `fetch` says why one failed (for an event's detail); `get` and `json` are for
//! callers to whom a failed side endpoint is simply not recorded.

use super::BackendError;
use super::transport::{error_chain, read_bounded};
use crate::config::BackendConfig;
use crate::text::bounded;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Client, Url};
use serde_json::Value;
use std::time::Duration;

/// How long one side request may take (the runner bounds the whole question as well).
const TIMEOUT: Duration = Duration::from_secs(4);
/// The most of a side endpoint's body that is read (a `/metrics` page or a model list is a few KiB).
const MAX_BYTES: usize = 1024 * 1024;

pub struct Side {
    client: Client,
    base: Url,
    auth: Option<HeaderValue>,
}

/// A side endpoint's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    /// The `Server` header, if any.
    pub server: Option<String>,
    pub body: String,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }
}

impl Side {
    pub fn new(config: &BackendConfig) -> Result<Side, BackendError> {
        let side = Side::at(config.url.clone(), TIMEOUT)
            .map_err(|err| BackendError::Client { backend: config.name.clone(), err })?;
        Ok(Side { auth: super::bearer(config)?, ..side })
    }

    /// Side requests to `base` with no token, each bounded by `timeout` (`soakd discover`'s).
    pub fn at(base: Url, timeout: Duration) -> Result<Side, reqwest::Error> {
        let client = Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("soakd/", env!("CARGO_PKG_VERSION")))
            // A redirect is the server's answer, never followed to another port or host.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()?;
        Ok(Side { client, base, auth: None })
    }

    /// `path` (with an optional `?query`) under the base URL, which may itself have a path.
    pub fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let (p, query) = path.split_once('?').map_or((path, None), |(p, q)| (p, Some(q)));
        url.set_path(&format!("{}{p}", self.base.path().trim_end_matches('/')));
        url.set_query(query);
        url
    }

    /// `GET url`, whole; the error is a sentence for an event's detail (the transport's words,
    /// or a body over the size limit).
    pub async fn fetch(&self, url: Url) -> Result<Reply, String> {
        let path = url.path().to_string();
        let mut req = self.client.get(url);
        if let Some(auth) = &self.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        let response = req.send().await.map_err(|e| format!("GET {path}: {}", error_chain(&e.without_url())))?;
        let status = response.status().as_u16();
        let server =
            response.headers().get(reqwest::header::SERVER).and_then(|v| v.to_str().ok()).map(|s| bounded(s, 128));
        let (bytes, complete) = read_bounded(response, MAX_BYTES)
            .await
            .map_err(|e| format!("GET {path}: {}", error_chain(&e.without_url())))?;
        if !complete {
            return Err(format!("GET {path}: the answer is over {MAX_BYTES} bytes"));
        }
        Ok(Reply { status, server, body: String::from_utf8_lossy(&bytes).into_owned() })
    }

    /// `GET url` as JSON from a 2xx answer; the error says what came instead.
    pub async fn fetch_json(&self, url: Url) -> Result<Value, String> {
        let path = url.path().to_string();
        let reply = self.fetch(url).await?;
        if !reply.ok() {
            return Err(bounded(&format!("GET {path}: HTTP {}: {}", reply.status, reply.body.trim()), 512));
        }
        serde_json::from_str(&reply.body)
            .map_err(|e| bounded(&format!("GET {path}: not JSON ({e}): {}", reply.body), 512))
    }

    /// `GET {base}{path}`; `None` when the server could not be reached or the body did not end.
    pub async fn get(&self, path: &str) -> Option<Reply> {
        self.fetch(self.url(path)).await.ok()
    }

    /// `GET {base}{path}` as JSON, when it answered 2xx with JSON.
    pub async fn json(&self, path: &str) -> Option<Value> {
        self.fetch_json(self.url(path)).await.ok()
    }
}

/// A server's `/health` as last seen, so that a failure records an event only when the
/// health changed (a burst of failures against a loading server gives one event, not 100).
#[derive(Default)]
pub struct HealthWatch {
    last: std::sync::Mutex<Option<String>>,
}

impl HealthWatch {
    /// `health_changed` when the state differs from the last one seen.
    pub fn note(&self, reply: Option<&Reply>) -> Option<super::ServerEvent> {
        let state = health_state(reply);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_deref() == Some(state.as_str()) {
            return None;
        }
        let before = last.replace(state.clone());
        let body = reply.map(|r| bounded(&r.body, 512));
        Some(super::ServerEvent {
            kind: super::EventKind::HealthChanged,
            detail: serde_json::json!({"from": before, "to": state, "status": reply.map(|r| r.status), "body": body}),
        })
    }
}

impl Side {
    /// `/health` and `/metrics` (the series with `prefix`), as observations; the health is
    /// also noted in `watch`.
    pub async fn health_and_metrics(&self, watch: &HealthWatch, prefix: &str) -> Vec<super::Observation> {
        let (health, metrics) = tokio::join!(self.get("/health"), self.get("/metrics"));
        watch.note(health.as_ref());
        let observation =
            |source, data| super::Observation { source, memory_bytes: None, gpu_memory_bytes: None, data };
        let mut seen = vec![observation(
            "health",
            serde_json::json!({"state": health_state(health.as_ref()), "status": health.as_ref().map(|r| r.status)}),
        )];
        if let Some(m) = metrics.filter(Reply::ok) {
            let series = super::metrics::parse(&m.body, prefix);
            if !series.is_empty() {
                seen.push(observation("metrics", series.into()));
            }
        }
        seen
    }

    /// After a failure: `/health` again, an event when it changed.
    pub async fn health_after_failure(&self, watch: &HealthWatch) -> Vec<super::ServerEvent> {
        watch.note(self.get("/health").await.as_ref()).into_iter().collect()
    }
}

/// `ok`, `unreachable`, or `http NNN` (llama.cpp answers 503 while loading its model).
pub fn health_state(reply: Option<&Reply>) -> String {
    match reply {
        None => "unreachable".into(),
        Some(r) if r.ok() => "ok".into(),
        Some(r) => format!("http {}", r.status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_events_only_on_change() {
        let w = HealthWatch::default();
        let ok = Reply { status: 200, server: None, body: "{\"status\":\"ok\"}".into() };
        let loading = Reply { status: 503, server: None, body: "{\"error\":{\"message\":\"Loading model\"}}".into() };
        assert!(w.note(Some(&ok)).is_some(), "the first look is recorded");
        assert!(w.note(Some(&ok)).is_none());
        let e = w.note(Some(&loading)).expect("a change");
        assert_eq!(e.detail["from"], "ok");
        assert_eq!(e.detail["to"], "http 503");
        assert!(w.note(Some(&loading)).is_none());
        assert_eq!(w.note(None).expect("a change").detail["to"], "unreachable");
    }
}
