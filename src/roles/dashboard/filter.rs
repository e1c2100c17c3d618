//! What the page is asked to show: the query of `/` and `/partials/status`.
//!
//! `?q=pay&state=down` lists the targets whose name contains `pay` (any case) and that
//! are down, with their full rows; `?group=shop` the full rows of one group;
//! `?replicas=2` the second page of the replica table. All of it works as plain links and
//! a plain GET form, without JavaScript; the script only fetches the same fragment with
//! the same query as the filter box changes.

use serde::Deserialize;

use super::snapshot::TargetRow;
use super::summary::word;

/// The states the filter offers: (query value, label).
pub const STATES: [(&str, &str); 7] = [
    ("", "any state"),
    ("problems", "problems"),
    ("down", "down"),
    ("degraded", "degraded"),
    ("maintenance", "maintenance"),
    ("up", "up"),
    ("unknown", "not judged"),
];

/// The query of the page; every field may be absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Query {
    /// Part of a target's name.
    #[serde(default)]
    pub q: String,
    /// One of [`STATES`]' values.
    #[serde(default)]
    pub state: String,
    /// A group's name.
    #[serde(default)]
    pub group: String,
    /// The replica table's page, from 1.
    #[serde(default)]
    pub replicas: Option<usize>,
}

impl Query {
    /// Whether it selects targets (and so the page lists them row by row).
    pub fn filters(&self) -> bool {
        !self.q.trim().is_empty() || !self.state.is_empty() || !self.group.is_empty()
    }

    /// Whether it asks for the page as everyone sees it (the one rendering that is
    /// cached per snapshot and second).
    pub fn is_plain(&self) -> bool {
        !self.filters() && self.replicas.unwrap_or(1) <= 1
    }

    /// Whether `row` is selected.
    pub fn selects(&self, row: &TargetRow) -> bool {
        let needle = self.q.trim().to_lowercase();
        let name = needle.is_empty() || row.name.to_lowercase().contains(&needle);
        let group = self.group.is_empty() || row.group.as_deref() == Some(self.group.as_str());
        let state = match (self.state.as_str(), word(row)) {
            ("", _) => true,
            ("problems", w) => matches!(w, "down" | "degraded" | "maintenance"),
            ("up", w) => w == "healthy",
            ("unknown", w) => matches!(w, "unknown" | "pending"),
            (wanted, w) => wanted == w,
        };
        name && group && state
    }

    /// The query string (with its `?`, or empty) of this query with the replica page
    /// set to `page`.
    pub fn with_replicas(&self, page: usize) -> String {
        Query {
            replicas: Some(page),
            ..self.clone()
        }
        .to_string()
    }
}

impl std::fmt::Display for Query {
    /// `?q=...&state=...`: the non-empty fields, encoded; empty when all are.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("q", &self.q),
            ("state", &self.state),
            ("group", &self.group),
        ] {
            if !value.is_empty() {
                out.append_pair(key, value);
            }
        }
        if let Some(page) = self.replicas.filter(|p| *p > 1) {
            out.append_pair("replicas", &page.to_string());
        }
        let query = out.finish();
        if query.is_empty() {
            Ok(())
        } else {
            write!(f, "?{query}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_string_round_trips_and_leaves_out_defaults() {
        assert_eq!(Query::default().to_string(), "");
        let query = Query {
            q: "a b&c".into(),
            state: "down".into(),
            replicas: Some(1),
            ..Query::default()
        };
        assert_eq!(query.to_string(), "?q=a+b%26c&state=down");
        assert_eq!(query.with_replicas(3), "?q=a+b%26c&state=down&replicas=3");
        assert!(query.filters() && !query.is_plain());
        assert!(
            Query {
                replicas: Some(1),
                ..Query::default()
            }
            .is_plain()
        );
    }
}
