//! `dns://[server[:port]]/name?type=A|AAAA|CNAME|MX|TXT|SRV|NS|PTR|SOA`: one query to one
//! server (UDP, again over TCP when the answer is truncated); no server: the first
//! `nameserver` of /etc/resolv.conf. Only the message layer of hickory is used: a
//! resolver would retry, cache and walk the search list, and hide the server's own
//! response code.
//!
//! Judged by `expect.rcode` (default `NOERROR`) and `expect.answers_contain` (values
//! the answers of the type asked for must include). With neither, at least one answer
//! is wanted; naming `rcode` alone judges the response code only.
//! Reasons: `NXDOMAIN`, `SERVFAIL`, `no A answer for api.internal`, `answer does not
//! contain 10.1.2.3 (got 10.9.9.9)`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

use super::{Facts, Found, within};
use crate::clock::millis_f64;
use crate::targets::Expect;

/// The record types a query may ask for.
const TYPES: [RecordType; 9] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::MX,
    RecordType::TXT,
    RecordType::SRV,
    RecordType::NS,
    RecordType::PTR,
    RecordType::SOA,
];

/// The response codes by their mnemonic (RFC 1035, 2136).
const RCODES: [&str; 11] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
    "NXRRSET", "NOTAUTH", "NOTZONE",
];

/// Where resolv.conf is.
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// One DNS query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The server asked and its port; `None`: the system's first nameserver.
    pub server: Option<(String, u16)>,
    /// The name asked for.
    pub name: Name,
    /// The record type asked for.
    pub kind: RecordType,
}

impl Query {
    /// The query of `dns://[server[:port]]/name?type=A`.
    pub(super) fn parse(url: &Url) -> Result<Self, String> {
        let form = "a dns URL is dns://[server[:port]]/name?type=A";
        let server = match url.host_str().filter(|h| !h.is_empty()) {
            Some(host) => Some((
                host.trim_matches(['[', ']']).to_owned(),
                url.port().unwrap_or(53),
            )),
            None if url.port().is_some() => return Err(form.into()),
            None => None,
        };
        let name = url.path().trim_start_matches('/');
        if name.is_empty() || name.contains('/') {
            return Err(form.into());
        }
        let name =
            Name::from_str_relaxed(name).map_err(|e| format!("{name:?} is no DNS name ({e})"))?;
        let mut kind = RecordType::A;
        for (key, value) in url.query_pairs() {
            if key != "type" {
                return Err(format!("{form} (no {key:?})"));
            }
            kind = TYPES
                .into_iter()
                .find(|t| t.to_string().eq_ignore_ascii_case(&value))
                .ok_or_else(|| {
                    let known: Vec<String> = TYPES.iter().map(ToString::to_string).collect();
                    format!("type {value:?} is none of {}", known.join(", "))
                })?;
        }
        Ok(Query { server, name, kind })
    }

    /// As it is written in the targets file.
    pub fn shown(&self) -> String {
        let server = self
            .server
            .as_ref()
            .map(|(host, port)| super::tls::authority(host, *port))
            .unwrap_or_default();
        let name = self.name.to_string();
        format!(
            "dns://{server}/{}?type={}",
            name.trim_end_matches('.'),
            self.kind
        )
    }
}

/// Checks that `text` names a response code.
pub(super) fn rcode(text: &str) -> Result<(), String> {
    if RCODES.iter().any(|r| r.eq_ignore_ascii_case(text)) {
        Ok(())
    } else {
        Err(format!("{text:?} is none of {}", RCODES.join(", ")))
    }
}

/// Asks the server, then judges its response.
pub(super) async fn check(
    source: Option<IpAddr>,
    query: &Query,
    expect: &Expect,
    timeout: Duration,
) -> Result<Found, String> {
    let start = Instant::now();
    let server = match &query.server {
        Some(server) => server.clone(),
        None => system_server()?,
    };
    let response = within(timeout, ask(source, &server, query)).await??;
    let lookup = start.elapsed();
    let code = u16::from(response.metadata.response_code);
    let rcode = RCODES
        .get(usize::from(code))
        .map_or_else(|| format!("RCODE {code}"), |r| (*r).to_owned());
    let answers: Vec<String> = response
        .answers
        .iter()
        .filter(|r| r.record_type() == query.kind)
        .map(|r| r.data.to_string())
        .collect();
    Ok(Found {
        failed: judge(query, expect, &rcode, &answers),
        facts: Facts {
            dns_lookup_ms: Some(millis_f64(lookup)),
            dns_rcode: Some(rcode),
            dns_answers: answers,
            ..Facts::default()
        },
        ..Found::default()
    })
}

/// What the response fails of `expect`.
fn judge(query: &Query, expect: &Expect, rcode: &str, answers: &[String]) -> Vec<String> {
    let want = expect.rcode.as_deref().unwrap_or("NOERROR");
    if !rcode.eq_ignore_ascii_case(want) {
        return vec![if want.eq_ignore_ascii_case("NOERROR") {
            rcode.to_owned()
        } else {
            format!("{rcode}, not {}", want.to_ascii_uppercase())
        }];
    }
    let name = query.name.to_string();
    let none = || {
        format!(
            "no {} answer for {}",
            query.kind,
            name.trim_end_matches('.')
        )
    };
    if answers.is_empty() && (expect.rcode.is_none() || !expect.answers_contain.is_empty()) {
        return vec![none()];
    }
    expect
        .answers_contain
        .iter()
        .filter(|want| !answers.iter().any(|a| same(a, want)))
        .map(|want| {
            format!(
                "answer does not contain {want} (got {})",
                answers.join(", ")
            )
        })
        .collect()
}

/// Whether an answer and an expected value are the same: addresses as addresses,
/// names without their final dot and case, text without its quotes.
fn same(answer: &str, want: &str) -> bool {
    let norm = |s: &str| {
        s.trim()
            .trim_matches('"')
            .trim_end_matches('.')
            .to_ascii_lowercase()
    };
    match (
        answer.trim().parse::<IpAddr>(),
        want.trim().parse::<IpAddr>(),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => norm(answer) == norm(want),
    }
}

/// The first nameserver of resolv.conf.
fn system_server() -> Result<(String, u16), String> {
    let text = std::fs::read_to_string(RESOLV_CONF)
        .map_err(|e| format!("no server named and cannot read {RESOLV_CONF}: {e}"))?;
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.split_whitespace().next())
        .next()
        .map(|server| (server.to_owned(), 53))
        .ok_or_else(|| format!("no server named and no nameserver in {RESOLV_CONF}"))
}

/// Sends the query, over TCP again if the UDP response is truncated.
async fn ask(
    source: Option<IpAddr>,
    (host, port): &(String, u16),
    query: &Query,
) -> Result<Message, String> {
    let addr = tokio::net::lookup_host((host.as_str(), *port))
        .await
        .map_err(|e| format!("cannot resolve the server {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("the server {host} has no address"))?;
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(hickory_proto::op::Query::query(
        query.name.clone(),
        query.kind,
    ));
    let bytes = message
        .to_vec()
        .map_err(|e| format!("cannot encode the query: {e}"))?;
    let id = message.metadata.id;
    let response = udp(source, addr, &bytes, id).await?;
    if response.metadata.truncation {
        return tcp(source, addr, &bytes, id).await;
    }
    Ok(response)
}

async fn udp(
    source: Option<IpAddr>,
    addr: SocketAddr,
    bytes: &[u8],
    id: u16,
) -> Result<Message, String> {
    let any = if addr.is_ipv4() {
        IpAddr::from([0; 4])
    } else {
        IpAddr::from([0u8; 16])
    };
    let local = SocketAddr::new(source.unwrap_or(any), 0);
    let failed = |e: std::io::Error| format!("no DNS answer from {addr}: {e}");
    let socket = tokio::net::UdpSocket::bind(local).await.map_err(failed)?;
    socket.connect(addr).await.map_err(failed)?;
    socket.send(bytes).await.map_err(failed)?;
    let mut buf = vec![0; 65_535];
    loop {
        let n = socket.recv(&mut buf).await.map_err(failed)?;
        // A datagram that is not the response to this query is no answer.
        if let Ok(message) = Message::from_vec(&buf[..n])
            && message.metadata.id == id
        {
            return Ok(message);
        }
    }
}

async fn tcp(
    source: Option<IpAddr>,
    addr: SocketAddr,
    bytes: &[u8],
    id: u16,
) -> Result<Message, String> {
    let failed = |e: std::io::Error| format!("no DNS answer over TCP from {addr}: {e}");
    let mut stream = super::connect(source, &addr.ip().to_string(), addr.port())
        .await
        .map_err(failed)?;
    let len = u16::try_from(bytes.len()).map_err(|_| "the query is too long".to_owned())?;
    stream.write_all(&len.to_be_bytes()).await.map_err(failed)?;
    stream.write_all(bytes).await.map_err(failed)?;
    let len = stream.read_u16().await.map_err(failed)?;
    let mut buf = vec![0; usize::from(len)];
    stream.read_exact(&mut buf).await.map_err(failed)?;
    let message = Message::from_vec(&buf).map_err(|e| format!("a malformed DNS answer: {e}"))?;
    if message.metadata.id != id {
        return Err(format!("the answer from {addr} is to another query"));
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(url: &str) -> Query {
        Query::parse(&Url::parse(url).expect("url")).expect("query")
    }

    fn expect(rcode: Option<&str>, contain: &[&str]) -> Expect {
        Expect {
            rcode: rcode.map(str::to_owned),
            answers_contain: contain.iter().map(|s| (*s).to_owned()).collect(),
            ..Expect::default()
        }
    }

    #[test]
    fn a_dns_url_names_server_name_and_type() {
        let q = query("dns://10.0.0.10:5353/api.internal?type=mx");
        assert_eq!(q.server, Some(("10.0.0.10".to_owned(), 5353)));
        assert_eq!(q.kind, RecordType::MX);
        assert_eq!(q.shown(), "dns://10.0.0.10:5353/api.internal?type=MX");
        let q = query("dns:///api.internal");
        assert_eq!((q.server, q.kind), (None, RecordType::A));
        for bad in [
            "dns:///",
            "dns:///a/b",
            "dns:///a?type=AXFR",
            "dns:///a?class=IN",
        ] {
            assert!(
                Query::parse(&Url::parse(bad).expect("url")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_response_code_and_answers_are_judged() {
        let q = query("dns:///api.test");
        let ok = ["10.1.2.3".to_owned()];
        assert!(judge(&q, &expect(None, &[]), "NOERROR", &ok).is_empty());
        assert_eq!(judge(&q, &expect(None, &[]), "NXDOMAIN", &[]), ["NXDOMAIN"]);
        assert_eq!(
            judge(&q, &expect(None, &[]), "NOERROR", &[]),
            ["no A answer for api.test"]
        );
        assert!(judge(&q, &expect(Some("nxdomain"), &[]), "NXDOMAIN", &[]).is_empty());
        // Naming the response code alone judges only it.
        assert!(judge(&q, &expect(Some("NOERROR"), &[]), "NOERROR", &[]).is_empty());
        assert_eq!(
            judge(&q, &expect(Some("NXDOMAIN"), &[]), "NOERROR", &ok),
            ["NOERROR, not NXDOMAIN"]
        );
        assert_eq!(
            judge(&q, &expect(None, &["10.9.9.9"]), "NOERROR", &ok),
            ["answer does not contain 10.9.9.9 (got 10.1.2.3)"]
        );
    }

    #[test]
    fn names_compare_without_case_or_final_dot() {
        assert!(same("Mail.Example.", "mail.example"));
        assert!(same("\"v=spf1 -all\"", "v=spf1 -all"));
        assert!(same("::1", "0::1"));
        assert!(!same("10.1.2.3", "10.1.2.30"));
    }
}
