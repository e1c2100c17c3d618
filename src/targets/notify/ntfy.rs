//! ntfy: a plain-text message POSTed to the topic's URL, with a title, a priority by
//! state (5 down, 4 degraded, 3 up) and a tag; an access token, when given, as a
//! bearer token.

use reqwest::header::{HeaderName, HeaderValue};

use super::{Channel, Event, Outgoing};

pub(super) fn render(channel: &Channel, event: &Event) -> Outgoing {
    let (priority, tag) = match event.state.as_str() {
        "down" => ("5", "rotating_light"),
        // A fast burn warns, as a degraded target does.
        "degraded" | "burn" => ("4", "warning"),
        _ => ("3", "white_check_mark"),
    };
    let title = format!("{} is {}", event.target, event.state);
    let mut headers = vec![
        (
            HeaderName::from_static("x-priority"),
            HeaderValue::from_static(priority),
        ),
        (
            HeaderName::from_static("x-tags"),
            HeaderValue::from_static(tag),
        ),
    ];
    // A header value is ASCII: a title that is not is left to the message.
    if let Ok(title) = HeaderValue::try_from(title) {
        headers.push((HeaderName::from_static("x-title"), title));
    }
    let outgoing = Outgoing {
        url: channel.url.clone(),
        headers,
        content_type: "text/plain",
        body: event.headline().into_bytes(),
    };
    match &channel.key {
        Some(token) => {
            outgoing.secret_header("authorization", &format!("Bearer {}", token.expose()))
        }
        None => outgoing,
    }
}
