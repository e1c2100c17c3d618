//! Microsoft Teams through a Workflows webhook: a message with one Adaptive Card
//! (schema 1.4) that states the change and lists its facts.

use serde_json::json;

use super::{Channel, Event, Outgoing};

pub(super) fn render(channel: &Channel, event: &Event) -> Outgoing {
    let mut facts = vec![
        json!({"title": "State", "value": event.state}),
        json!({"title": "Was", "value": event.previous}),
        json!({"title": "URL", "value": event.url}),
    ];
    if let Some(reason) = &event.reason {
        facts.push(json!({"title": "Reason", "value": reason}));
    }
    let color = match event.state.as_str() {
        "down" => "Attention",
        // A fast burn warns, as a degraded target does.
        "degraded" | "burn" => "Warning",
        _ => "Good",
    };
    let card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "size": "Medium",
                "weight": "Bolder",
                "color": color,
                "text": format!("{} is {}", event.target, event.state),
            },
            {"type": "TextBlock", "wrap": true, "text": event.headline()},
            {"type": "FactSet", "facts": facts},
        ],
    });
    let body = json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    });
    Outgoing::json(channel.url.clone(), &body)
}
