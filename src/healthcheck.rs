//! `svc healthcheck URL`: the container HEALTHCHECK, since the image has no curl.

use std::time::Duration;

/// Why the check failed; each is one line on stderr and exit code 1.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// No answer (refused, timed out, bad URL scheme, ...).
    #[error("{url}: {source}")]
    Request {
        /// The URL checked.
        url: url::Url,
        /// What went wrong.
        source: reqwest::Error,
    },
    /// An answer, but not 2xx.
    #[error("{url}: answered {status}")]
    Status {
        /// The URL checked.
        url: url::Url,
        /// The status it answered.
        status: reqwest::StatusCode,
    },
}

/// `Ok` when `url` answers 2xx within `timeout`.
pub async fn check(url: &url::Url, timeout: Duration) -> Result<(), CheckError> {
    let request = |source| CheckError::Request {
        url: url.clone(),
        source,
    };
    let client = crate::tls::http_client()
        .timeout(timeout)
        .build()
        .map_err(request)?;
    let status = client
        .get(url.clone())
        .send()
        .await
        .map_err(request)?
        .status();
    if status.is_success() {
        Ok(())
    } else {
        Err(CheckError::Status {
            url: url.clone(),
            status,
        })
    }
}
