//! PagerDuty Events API v2: `trigger` when a target goes down (or degraded), `resolve`
//! when it is up again, both with `dedup_key` = the target's name, so a recovery
//! resolves the incident its failure opened and a repeat adds nothing. The routing
//! key goes in the body, as the API wants it.

use serde_json::json;

use super::{Channel, Event, Outgoing};

/// The Events API v2 endpoint.
pub(super) const URL: &str = "https://events.pagerduty.com/v2/enqueue";

pub(super) fn render(channel: &Channel, event: &Event) -> Outgoing {
    let routing_key = channel.key.as_ref().map(|k| k.expose()).unwrap_or_default();
    let body = if event.state == "up" {
        json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": event.target,
        })
    } else {
        json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": event.target,
            "payload": {
                "summary": event.headline(),
                "source": event.url,
                "severity": if event.state == "down" { "critical" } else { "warning" },
                "timestamp": super::rfc3339(event.since),
                "group": event.group,
                "custom_details": {
                    "reason": event.reason,
                    "previous": event.previous,
                    "id": event.id,
                },
            },
        })
    };
    Outgoing::json(channel.url.clone(), &body)
}
