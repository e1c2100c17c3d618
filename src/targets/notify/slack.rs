//! Slack incoming webhooks: one line of mrkdwn text,
//! `*payments* is down (was up): HTTP 503`.

use serde_json::json;

use super::{Channel, Event, Outgoing};

pub(super) fn render(channel: &Channel, event: &Event) -> Outgoing {
    let line = event.headline();
    let text = match line.strip_prefix(event.target.as_str()) {
        Some(rest) => format!("*{}*{rest}", event.target),
        None => line,
    };
    Outgoing::json(channel.url.clone(), &json!({ "text": text }))
}
