//! HTTP from the tests' side: one way to build a client, and the GETs tests poll with.

use std::time::Duration;

use super::eventually;

/// An HTTP client for tests (the process's TLS crypto installed first, as svc does).
pub fn client() -> reqwest::Client {
    client_builder().build().expect("HTTP client")
}

/// A builder of such clients.
pub fn client_builder() -> reqwest::ClientBuilder {
    svc::tls::http_client()
}

/// GET `url` and parse JSON; `None` on any failure (for polling with [`eventually`]).
pub async fn try_json(client: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    client.get(url).send().await.ok()?.json().await.ok()
}

/// Polls `url` (a `/health/ready`) until it names a reason other than `starting`.
pub async fn not_ready_reason(client: &reqwest::Client, url: &str) -> String {
    eventually(Duration::from_secs(10), "a not-ready reason", || async {
        let body = try_json(client, url).await?;
        let reason = body["reason"].as_str()?.to_owned();
        (reason != "starting").then_some(reason)
    })
    .await
}

/// The body of a GET of `url` as text; panics when there is no answer.
pub async fn get_text(url: &str) -> String {
    client()
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}
