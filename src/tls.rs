//! The process's TLS crypto: rustls with ring, for every TLS connection svc makes
//! (Redis over `rediss://`, HTTPS probes of targets, webhooks).

/// Installs ring as the process's crypto provider unless one is installed already;
/// called before building anything that makes TLS connections.
pub fn install() {
    // A second install reports the first; either way a provider is in place.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A builder of HTTP clients that speak TLS with the process's crypto: the one way svc
/// builds an HTTP client (reqwest panics on a client built before a provider is in
/// place).
pub fn http_client() -> reqwest::ClientBuilder {
    install();
    reqwest::Client::builder()
}
