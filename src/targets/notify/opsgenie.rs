//! Opsgenie Alert API: a down (or degraded) target creates an alert whose `alias` is
//! the target's name (Opsgenie drops a second open alert with one alias); a recovery
//! closes the alert by that alias. The API key goes in `Authorization: GenieKey`.

use serde_json::json;

use super::{Channel, Event, Outgoing};

/// The Alert API's endpoint (an EU account uses `https://api.eu.opsgenie.com/...`).
pub(super) const URL: &str = "https://api.opsgenie.com/v2/alerts";

pub(super) fn render(channel: &Channel, event: &Event) -> Outgoing {
    let key = channel.key.as_ref().map(|k| k.expose()).unwrap_or_default();
    let outgoing = if event.state == "up" {
        let mut url = channel.url.clone();
        url.path_segments_mut()
            .map(|mut path| {
                path.pop_if_empty().push(&event.target).push("close");
            })
            .ok();
        url.query_pairs_mut().append_pair("identifierType", "alias");
        Outgoing::json(url, &json!({"source": "svc", "note": event.headline()}))
    } else {
        let mut tags = vec![format!("svc:{}", event.state)];
        tags.extend(event.group.clone());
        Outgoing::json(
            channel.url.clone(),
            &json!({
                "message": format!("{} is {}", event.target, event.state),
                "alias": event.target,
                "description": event.headline(),
                "source": "svc",
                "priority": if event.state == "down" { "P1" } else { "P3" },
                "tags": tags,
                "details": {"url": event.url, "id": event.id},
            }),
        )
    };
    outgoing.secret_header("authorization", &format!("GenieKey {key}"))
}
