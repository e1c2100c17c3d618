//! The generic webhook: the event itself, as JSON.

use super::{Channel, Event, Outgoing};

pub(super) fn render(channel: &Channel, event: &Event) -> Outgoing {
    let body = serde_json::to_value(event).unwrap_or_default();
    Outgoing::json(channel.url.clone(), &body)
}
