//! Serving `/metrics` on soakd's runtime (axum): OpenMetrics when the scraper asks for it (as
//! Prometheus does), the Prometheus text format 0.0.4 otherwise (curl, `promtool check
//! metrics`). With a bearer token configured, a scrape without `Authorization: Bearer <token>`
//! gets 401 and nothing else. Only `GET /metrics` is served.

use super::Metrics;
use crate::shutdown::Shutdown;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

struct Served {
    metrics: Metrics,
    token: Option<String>,
}

/// Serves `metrics` on `listener` until `stop`.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Metrics, token: Option<String>, stop: Shutdown) {
    let app = router(metrics, token);
    let served = axum::serve(listener, app).with_graceful_shutdown(async move { stop.stopping().await });
    if let Err(e) = served.await {
        tracing::warn!(error = %e, "/metrics stopped serving");
    }
}

/// The endpoint as a router (what `serve` runs; tests call it directly).
pub fn router(metrics: Metrics, token: Option<String>) -> Router {
    Router::new().route("/metrics", get(scrape)).with_state(Arc::new(Served { metrics, token }))
}

async fn scrape(State(served): State<Arc<Served>>, headers: HeaderMap) -> Response {
    if let Some(token) = &served.token {
        let given =
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
            return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "a bearer token is required\n")
                .into_response();
        }
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if accept.contains("application/openmetrics-text") {
        ([(header::CONTENT_TYPE, OPENMETRICS)], served.metrics.openmetrics()).into_response()
    } else {
        (
            [(header::CONTENT_TYPE, prometheus_client::encoding::prometheus_text::CONTENT_TYPE)],
            served.metrics.prometheus_text(),
        )
            .into_response()
    }
}

/// Compares in time that depends only on the lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tally::Finished;

    async fn get(app: Router, headers: &[(&str, &str)]) -> (u16, String, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut req = reqwest::Client::new().get(format!("http://{addr}/metrics"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let kind = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        (status, kind, resp.text().await.unwrap())
    }

    fn metrics() -> Metrics {
        let m = Metrics::new();
        m.observe(&Finished {
            backend: "b".into(),
            job: "j".into(),
            outcome: "ok".into(),
            ttft_ms: Some(5.0),
            first_content_ms: Some(5.0),
            e2e_ms: Some(9.0),
            prompt_tokens: None,
            completion_tokens: Some(3),
            decode_tps: None,
        });
        m
    }

    #[tokio::test]
    async fn a_token_guards_the_endpoint() {
        let app = || router(metrics(), Some("s3cret-token".into()));
        assert_eq!(get(app(), &[]).await.0, 401);
        assert_eq!(get(app(), &[("authorization", "Bearer wrong-token")]).await.0, 401);
        let (status, _, body) = get(app(), &[("authorization", "Bearer s3cret-token")]).await;
        assert_eq!(status, 200);
        assert!(body.contains("soakd_requests_total{backend=\"b\",job=\"j\",outcome=\"ok\"} 1"), "{body}");
    }

    #[tokio::test]
    async fn openmetrics_when_asked_the_text_format_otherwise() {
        let (_, kind, body) =
            get(router(metrics(), None), &[("accept", "application/openmetrics-text;version=1.0.0,*/*;q=0.1")]).await;
        assert!(kind.starts_with("application/openmetrics-text") && body.ends_with("# EOF\n"), "{kind}");
        let (_, kind, body) = get(router(metrics(), None), &[]).await;
        assert!(kind.starts_with("text/plain; version=0.0.4") && !body.contains("# EOF"), "{kind}");
    }
}
