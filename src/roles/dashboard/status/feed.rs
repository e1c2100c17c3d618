//! A status page's incidents as an Atom 1.0 feed (RFC 4287), the way status pages
//! publish them: one entry per incident, open ones first, titled "<component> down"
//! and saying when it began and ended. Like the page it tells no reason.

use std::fmt::Write;

use super::report::{PublicIncident, Report, State};

/// Content type of the feed.
pub const CONTENT_TYPE: &str = "application/atom+xml; charset=utf-8";

/// Unix seconds as RFC 3339 (`2026-12-05T14:02:00Z`).
pub fn rfc3339(at: f64) -> String {
    jiff::Timestamp::from_second(at.floor() as i64)
        .map_or_else(|_| "1970-01-01T00:00:00Z".to_owned(), |t| t.to_string())
}

/// `text` escaped for XML character data and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0.
            c if c.is_control() && !matches!(c, '\n' | '\t' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// "payments down" or "payments degraded".
pub fn title(incident: &PublicIncident) -> String {
    let what = match incident.status {
        State::Degraded => "degraded",
        _ => "down",
    };
    format!("{} {what}", incident.component)
}

/// "Down from 2026-12-05T14:02:00Z to 2026-12-05T14:32:00Z (30 min)." or, while open,
/// "Down since …".
pub fn summary(incident: &PublicIncident) -> String {
    let what = match incident.status {
        State::Degraded => "Degraded",
        _ => "Down",
    };
    let took = super::super::views::duration(incident.duration_s);
    match incident.ended_at {
        Some(end) => format!(
            "{what} from {} to {} ({took}).",
            rfc3339(incident.started_at),
            rfc3339(end)
        ),
        None => format!(
            "{what} since {} ({took} so far).",
            rfc3339(incident.started_at)
        ),
    }
}

/// The feed of `report`.
pub fn atom(report: &Report) -> String {
    let incidents = report
        .current_incidents
        .iter()
        .chain(&report.past_incidents);
    let updated = incidents
        .clone()
        .map(|i| i.ended_at.unwrap_or(i.started_at))
        .fold(None, |newest: Option<f64>, t| {
            Some(newest.map_or(t, |n| n.max(t)))
        })
        .unwrap_or(report.updated_at);
    let slug = escape(&report.slug);
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    let _ = write!(
        xml,
        "<feed xmlns=\"http://www.w3.org/2005/Atom\">\n\
         <id>urn:svc:status:{slug}</id>\n\
         <title>{title}</title>\n\
         <updated>{updated}</updated>\n\
         <author><name>{title}</name></author>\n\
         <link rel=\"alternate\" type=\"text/html\" href=\"/status/{slug}\"/>\n\
         <link rel=\"self\" type=\"application/atom+xml\" href=\"/status/{slug}/feed.atom\"/>\n",
        title = escape(&report.title),
        updated = rfc3339(updated),
    );
    for incident in incidents {
        let _ = write!(
            xml,
            "<entry>\n\
             <id>urn:svc:status:{slug}:incident:{id}</id>\n\
             <title>{title}</title>\n\
             <published>{published}</published>\n\
             <updated>{updated}</updated>\n\
             <content type=\"text\">{content}</content>\n\
             </entry>\n",
            id = escape(&incident.id),
            title = escape(&title(incident)),
            published = rfc3339(incident.started_at),
            updated = rfc3339(incident.ended_at.unwrap_or(incident.started_at)),
            content = escape(&summary(incident)),
        );
    }
    xml.push_str("</feed>\n");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_xml() {
        assert_eq!(escape("a<b>&\"c'\u{7}"), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(rfc3339(86400.5), "1970-01-02T00:00:00Z");
    }
}
