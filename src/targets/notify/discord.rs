//! Discord webhooks: one embed, coloured by state (red down, amber degraded, green
//! up), with the reason and the URL as fields.

use serde_json::json;

use super::{Channel, Event, Outgoing};

/// Embed colours (24-bit RGB).
const RED: u32 = 0xD32F2F;
const AMBER: u32 = 0xF9A825;
const GREEN: u32 = 0x2E7D32;

pub(super) fn render(channel: &Channel, event: &Event) -> Outgoing {
    let color = match event.state.as_str() {
        "down" => RED,
        // A fast burn warns, as a degraded target does.
        "degraded" | "burn" => AMBER,
        _ => GREEN,
    };
    let mut fields = vec![json!({"name": "URL", "value": event.url})];
    if let Some(reason) = &event.reason {
        fields.push(json!({"name": "Reason", "value": reason}));
    }
    if let Some(group) = &event.group {
        fields.push(json!({"name": "Group", "value": group, "inline": true}));
    }
    let body = json!({
        "embeds": [{
            "title": format!("{} is {}", event.target, event.state),
            "description": event.headline(),
            "color": color,
            "fields": fields,
            "timestamp": super::rfc3339(event.since),
        }],
    });
    Outgoing::json(channel.url.clone(), &body)
}
