//! `ws://` and `wss://`: the WebSocket opening handshake; with `expect.send`, a text
//! message sent once the socket is open; with `expect.receive_contains`, text the
//! first message received must contain (sent or not: a server may speak first).
//! Reasons: `WebSocket handshake failed: HTTP error: 404 Not Found`, `message does not
//! contain "pong" (got "busy")`, `the server closed the WebSocket before a message`.
//!
//! `wss://` runs over the TLS of [`super::tls`] (ALPN `http/1.1`, the target's
//! `ca_file`), so its certificate is judged as an https target's.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message;
use url::Url;

use super::{Answer, Found, tls, within};
use crate::targets::Expect;

/// Most of a message quoted in a reason.
const QUOTED: usize = 80;

/// A WebSocket.
#[derive(Debug, Clone, PartialEq)]
pub struct Socket {
    /// Its `ws://` or `wss://` URL.
    pub url: Url,
    /// CA certificates (PEM) trusted besides the system's roots (`wss://`).
    pub ca_file: Option<PathBuf>,
}

impl Socket {
    /// The socket of a `ws://` or `wss://` URL.
    pub(super) fn parse(url: Url) -> Result<Self, String> {
        if url.host_str().is_none_or(str::is_empty) {
            return Err("a ws URL is ws://host[:port]/path".into());
        }
        Ok(Socket { url, ca_file: None })
    }
}

/// Opens the socket and, as `expect` says, sends and receives a message.
pub(super) async fn check(
    source: Option<IpAddr>,
    socket: &Socket,
    expect: &Expect,
    timeout: Duration,
) -> Result<Found, String> {
    within(timeout, open(source, socket, expect)).await?
}

async fn open(source: Option<IpAddr>, socket: &Socket, expect: &Expect) -> Result<Found, String> {
    let url = &socket.url;
    let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
    let port = url.port_or_known_default().unwrap_or(80);
    if url.scheme() == "wss" {
        let session = tls::connect(
            source,
            host,
            port,
            socket.ca_file.as_deref(),
            &[b"http/1.1"],
        )
        .await?;
        let (cert_expires_at, facts) = (session.cert_expires_at, session.facts());
        Ok(Found {
            failed: talk(session.stream, url, expect).await?,
            answer: Answer {
                cert_expires_at,
                ..Answer::default()
            },
            facts,
            ..Found::default()
        })
    } else {
        let tcp = super::connect(source, host, port)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        Ok(Found {
            failed: talk(tcp, url, expect).await?,
            ..Found::default()
        })
    }
}

/// The handshake on `stream`, then the messages: what fails of `expect`.
async fn talk<S>(stream: S, url: &Url, expect: &Expect) -> Result<Vec<String>, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut ws, _) = tokio_tungstenite::client_async(url.as_str(), stream)
        .await
        .map_err(|e| format!("WebSocket handshake failed: {e}"))?;
    if let Some(text) = &expect.send {
        ws.send(Message::text(text.clone()))
            .await
            .map_err(|e| format!("cannot send on the WebSocket: {e}"))?;
    }
    let mut failed = Vec::new();
    if let Some(want) = &expect.receive_contains {
        let got = loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => break Ok(text.to_string()),
                Some(Ok(Message::Binary(bytes))) => {
                    break Ok(String::from_utf8_lossy(&bytes).into_owned());
                }
                // Control frames are no answer.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(frame))) => {
                    let why = frame
                        .map(|f| format!(" (code {})", u16::from(f.code)))
                        .unwrap_or_default();
                    break Err(format!(
                        "the server closed the WebSocket{why} before a message"
                    ));
                }
                None => break Err("the server closed the WebSocket before a message".to_owned()),
                Some(Err(e)) => break Err(format!("the WebSocket failed: {e}")),
            }
        };
        match got {
            Ok(text) if text.contains(want.as_str()) => {}
            Ok(text) => failed.push(format!(
                "message does not contain {want:?} (got {:?})",
                text.chars().take(QUOTED).collect::<String>()
            )),
            Err(why) => failed.push(why),
        }
    }
    // Closing is a courtesy: the verdict is made.
    let _ = ws.close(None).await;
    Ok(failed)
}
