//! `icmp://host[?count=3]`: `count` echo requests one after the other, each waiting
//! its share of the timeout for its reply. Down when every one is lost (`3 of 3
//! echoes lost`), degraded when some are (`1 of 3 echoes lost`); the response time is
//! the mean round trip of the replies.
//!
//! The socket is an unprivileged ICMP datagram socket where the kernel allows them
//! (the process's group within `net.ipv4.ping_group_range`, a namespaced sysctl a
//! pod may set), else a raw socket (`CAP_NET_RAW`). One socket per probe: with
//! datagram sockets the kernel gives each its own identifier and hands it only its
//! own replies.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use surge_ping::{Client, Config, ICMP, PingIdentifier, PingSequence, SurgeError};
use url::Url;

use super::{Facts, Found};
use crate::clock::millis_f64;

/// Echo requests of a target that names no count.
pub const DEFAULT_COUNT: u16 = 3;
/// Most echo requests one probe sends.
pub const MAX_COUNT: u16 = 20;
/// The payload of each request, as ping(8) sends.
const PAYLOAD: [u8; 56] = [0; 56];

/// A host to send echo requests to.
#[derive(Debug, Clone, PartialEq)]
pub struct Echo {
    /// Host name or address.
    pub host: String,
    /// Echo requests per probe.
    pub count: u16,
}

impl Echo {
    /// The echoes of `icmp://host[?count=N]`.
    pub(super) fn parse(url: &Url) -> Result<Self, String> {
        let form = "an icmp URL is icmp://host[?count=3]";
        let host = match url.host_str() {
            Some(host) if !host.is_empty() && url.port().is_none() => host.trim_matches(['[', ']']),
            _ => return Err(form.into()),
        };
        if !(url.path().is_empty() || url.path() == "/") {
            return Err(form.into());
        }
        let mut count = DEFAULT_COUNT;
        for (key, value) in url.query_pairs() {
            count = match (key.as_ref(), value.parse::<u16>()) {
                ("count", Ok(n @ 1..=MAX_COUNT)) => n,
                ("count", _) => return Err(format!("count {value:?} is not 1 to {MAX_COUNT}")),
                _ => return Err(format!("{form} (no {key:?})")),
            };
        }
        Ok(Echo {
            host: host.to_owned(),
            count,
        })
    }

    /// As it is written in the targets file.
    pub fn shown(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.count {
            DEFAULT_COUNT => format!("icmp://{host}"),
            n => format!("icmp://{host}?count={n}"),
        }
    }
}

/// Sends the echo requests and judges the replies.
pub(super) async fn check(
    source: Option<IpAddr>,
    echo: &Echo,
    timeout: Duration,
) -> Result<Found, String> {
    let ip = match echo.host.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => tokio::net::lookup_host((echo.host.as_str(), 0))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", echo.host))?
            .next()
            .map(|addr| addr.ip())
            .ok_or_else(|| format!("{} has no address", echo.host))?,
    };
    let mut config = match ip {
        IpAddr::V4(_) => Config::builder(),
        IpAddr::V6(_) => Config::builder().kind(ICMP::V6),
    };
    if let Some(source) = source {
        config = config.bind(SocketAddr::new(source, 0));
    }
    let config = config.build();
    let client = Client::new(&config).map_err(|e| {
        format!(
            "no ICMP socket ({e}): allow unprivileged ICMP with the sysctl \
             net.ipv4.ping_group_range, or grant CAP_NET_RAW"
        )
    })?;
    // The kernel replaces it on datagram sockets; raw sockets tell replies by it.
    let ident = PingIdentifier(uuid::Uuid::new_v4().as_fields().1);
    let mut pinger = client.pinger(ip, ident).await;
    pinger.timeout(timeout / u32::from(echo.count));
    let mut rtts = Vec::with_capacity(usize::from(echo.count));
    for seq in 0..echo.count {
        match pinger.ping(PingSequence(seq), &PAYLOAD).await {
            Ok((_, rtt)) => rtts.push(Some(rtt)),
            Err(SurgeError::Timeout { .. }) => rtts.push(None),
            Err(e) => return Err(format!("cannot send an echo request to {ip}: {e}")),
        }
    }
    judge(&rtts)
}

/// The verdict on the round trips of the echoes (`None`: lost).
fn judge(rtts: &[Option<Duration>]) -> Result<Found, String> {
    let replies: Vec<Duration> = rtts.iter().flatten().copied().collect();
    let sent = u32::try_from(rtts.len()).unwrap_or(u32::MAX);
    let lost = sent - u32::try_from(replies.len()).unwrap_or(u32::MAX);
    let lost_text = format!("{lost} of {sent} echoes lost");
    if replies.is_empty() {
        return Err(lost_text);
    }
    let mean = replies.iter().sum::<Duration>() / u32::try_from(replies.len()).unwrap_or(1);
    Ok(Found {
        degraded: (lost > 0).then_some(lost_text),
        response_time: Some(mean),
        facts: Facts {
            icmp_sent: Some(sent),
            icmp_lost: Some(lost),
            icmp_rtt_ms: Some(millis_f64(mean)),
            ..Facts::default()
        },
        ..Found::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn every_echo_lost_is_down_and_some_lost_degraded() {
        assert_eq!(
            judge(&[None, None, None]).expect_err("down"),
            "3 of 3 echoes lost"
        );
        let some = judge(&[Some(MS), None, Some(3 * MS)]).expect("answered");
        assert_eq!(some.degraded.as_deref(), Some("1 of 3 echoes lost"));
        assert_eq!(some.response_time, Some(2 * MS));
        assert_eq!(
            (some.facts.icmp_sent, some.facts.icmp_lost),
            (Some(3), Some(1))
        );
        let all = judge(&[Some(MS); 3]).expect("answered");
        assert_eq!(all.degraded, None);
    }

    #[test]
    fn an_icmp_url_names_a_host_and_a_count() {
        let echo = |url: &str| Echo::parse(&Url::parse(url).expect("url"));
        assert_eq!(echo("icmp://10.0.0.1").expect("echo").count, DEFAULT_COUNT);
        let five = echo("icmp://gw.internal?count=5").expect("echo");
        assert_eq!(five.shown(), "icmp://gw.internal?count=5");
        assert_eq!(echo("icmp://[::1]").expect("echo").shown(), "icmp://[::1]");
        for bad in [
            "icmp://h:1",
            "icmp://h/x",
            "icmp://h?count=0",
            "icmp://h?ttl=3",
        ] {
            assert!(echo(bad).is_err(), "{bad}");
        }
    }
}
