//! Per-client rate limiting (off unless configured), with governor's GCRA.
//!
//! The client is the peer address, or, when the peer is a trusted proxy, the rightmost
//! address of `X-Forwarded-For` that is not itself a trusted proxy (so a client cannot
//! pick its own bucket by sending the header). Over the limit: 429 with `Retry-After`,
//! the `RateLimit-*` headers and the JSON error body; counted in a metric. Only the
//! routes the limiter wraps are limited: probes and `/metrics` never are.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use actix_web::middleware::Next;
use actix_web::{Error, web};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use ipnet::IpNet;
use tokio_util::sync::CancellationToken;

use crate::telemetry::metric;

/// How a client's requests are limited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second a client may make, on average.
    pub per_second: NonZeroU32,
    /// Requests a client may make at once after a quiet spell.
    pub burst: NonZeroU32,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
}

type Keyed =
    RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock, StateInformationMiddleware>;

/// The limiter of one server, shared by its workers.
#[derive(Clone)]
pub struct Limiter {
    limiter: Arc<Keyed>,
    trusted: Arc<[IpNet]>,
    burst: u32,
}

impl Limiter {
    /// A limiter for `limit`; forgets idle clients every minute until `stop`, so the
    /// table does not grow with every address ever seen.
    pub fn start(limit: &RateLimit, stop: CancellationToken) -> Self {
        let quota = Quota::per_second(limit.per_second).allow_burst(limit.burst);
        let limiter =
            Arc::new(RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>());
        let forgetting = Arc::clone(&limiter);
        crate::tasks::spawn_until(stop, "rate limiter", async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(60));
            loop {
                ticks.tick().await;
                forgetting.retain_recent();
                forgetting.shrink_to_fit();
            }
        });
        Limiter {
            limiter,
            trusted: limit.trusted_proxies.clone().into(),
            burst: limit.burst.get(),
        }
    }

    /// The client a request counts against.
    fn client(&self, req: &ServiceRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip();
        if !self.trusts(peer) {
            return Some(peer);
        }
        let forwarded = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        // Rightmost first: each trusted proxy appended the address it saw.
        for hop in forwarded.iter().rev() {
            match hop.parse::<IpAddr>() {
                Ok(ip) if self.trusts(ip) => continue,
                Ok(ip) => return Some(ip),
                // A hop that is no address cannot be believed: the proxy's is.
                Err(_) => return Some(peer),
            }
        }
        Some(peer)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }
}

fn header(name: &'static str, value: impl ToString) -> Option<(HeaderName, HeaderValue)> {
    Some((
        HeaderName::from_static(name),
        HeaderValue::from_str(&value.to_string()).ok()?,
    ))
}

/// The middleware: lets the request through or answers 429.
pub async fn limit(
    limiter: web::Data<Limiter>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let Some(client) = limiter.client(&req) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    match limiter.limiter.check_key(&client) {
        Ok(state) => {
            let mut res = next.call(req).await?.map_into_left_body();
            let headers = res.headers_mut();
            for (name, value) in [
                header("ratelimit-limit", limiter.burst),
                header("ratelimit-remaining", state.remaining_burst_capacity()),
            ]
            .into_iter()
            .flatten()
            {
                headers.insert(name, value);
            }
            Ok(res)
        }
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            // Whole seconds, rounded up: a client told 0 would retry at once.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            metrics::counter!(metric::GATEWAY_RATE_LIMITED.name).increment(1);
            let mut res = super::error::body(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("rate limit of this client exceeded; retry in {seconds} s"),
            );
            let headers = res.headers_mut();
            for (name, value) in [
                Some((RETRY_AFTER, HeaderValue::from(seconds))),
                header("ratelimit-limit", limiter.burst),
                header("ratelimit-remaining", 0),
                header("ratelimit-reset", seconds),
            ]
            .into_iter()
            .flatten()
            {
                headers.insert(name, value);
            }
            Ok(req.into_response(res).map_into_right_body())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn limiter(trusted: &[&str]) -> Limiter {
        let limit = RateLimit {
            per_second: NonZeroU32::MIN,
            burst: NonZeroU32::MIN,
            trusted_proxies: trusted.iter().filter_map(|n| n.parse().ok()).collect(),
        };
        let quota = Quota::per_second(limit.per_second);
        Limiter {
            limiter: Arc::new(
                RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            ),
            trusted: limit.trusted_proxies.into(),
            burst: 1,
        }
    }

    fn client(limiter: &Limiter, peer: &str, forwarded: Option<&str>) -> Option<IpAddr> {
        let mut req = TestRequest::default().peer_addr(peer.parse().ok()?);
        if let Some(f) = forwarded {
            req = req.insert_header(("x-forwarded-for", f));
        }
        limiter.client(&req.to_srv_request())
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        let open = limiter(&[]);
        assert_eq!(client(&open, "1.2.3.4:5", Some("9.9.9.9")), ip("1.2.3.4"));
        let behind = limiter(&["10.0.0.0/8"]);
        assert_eq!(
            client(&behind, "10.0.0.1:5", Some("9.9.9.9")),
            ip("9.9.9.9")
        );
        // A client's own header in front of the proxy's hop does not count.
        assert_eq!(
            client(&behind, "10.0.0.1:5", Some("6.6.6.6, 9.9.9.9, 10.0.0.2")),
            ip("9.9.9.9")
        );
        assert_eq!(
            client(&behind, "10.0.0.1:5", Some("garbage")),
            ip("10.0.0.1")
        );
        assert_eq!(client(&behind, "10.0.0.1:5", None), ip("10.0.0.1"));
        assert_eq!(client(&behind, "8.8.8.8:5", Some("9.9.9.9")), ip("8.8.8.8"));
    }
}
