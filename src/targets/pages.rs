//! Public status pages: which targets a page at `/status/{slug}` shows, and how it is
//! titled.
//!
//! ```yaml
//! status_pages:
//!   - slug: shop                   # [a-z0-9-]+, unique
//!     title: Example Shop status
//!     description: Live status of the shop's services
//!     groups: [shop]               # and/or
//!     targets: [payments, orders]
//!     footer: Questions? support@example.com
//! ```
//!
//! A page lists its targets by name only, grouped by the groups it names, then the
//! targets it names one by one; every group and target it names must exist. What a
//! page may show of them (a state, daily uptime, incidents without their reasons) is
//! the dashboard's concern; this module only checks the file.

use serde::Deserialize;

use super::Target;

/// Longest slug.
pub const MAX_SLUG: usize = 64;

/// One status page, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPage {
    /// Where it is served: `/status/{slug}`.
    pub slug: String,
    /// Its heading and the title of its documents.
    pub title: String,
    /// A line under the heading.
    pub description: Option<String>,
    /// Groups whose targets it shows, each as a section of its own.
    pub groups: Vec<String>,
    /// Targets it shows one by one, after the groups.
    pub targets: Vec<String>,
    /// A line at its foot.
    pub footer: Option<String>,
}

/// The components of a page: `(group, targets)` sections in page order; `None` for
/// the section of targets named one by one.
pub type Sections = Vec<(Option<String>, Vec<String>)>;

impl StatusPage {
    /// Its sections: each group it names with its targets (file order), then the
    /// targets it names one by one. A target listed twice shows once, in its group.
    pub fn sections(&self, targets: &[Target]) -> Sections {
        let mut sections: Sections = self
            .groups
            .iter()
            .map(|g| {
                let members = targets
                    .iter()
                    .filter(|t| t.group.as_deref() == Some(g))
                    .map(|t| t.name.clone())
                    .collect();
                (Some(g.clone()), members)
            })
            .collect();
        let shown = |name: &str| {
            sections
                .iter()
                .any(|(_, names)| names.iter().any(|n| n == name))
        };
        let alone: Vec<String> = self
            .targets
            .iter()
            .filter(|t| !shown(t.as_str()))
            .cloned()
            .collect();
        if !alone.is_empty() {
            sections.push((None, alone));
        }
        sections
    }

    /// Every target it shows, in page order.
    pub fn names(&self, targets: &[Target]) -> Vec<String> {
        self.sections(targets)
            .into_iter()
            .flat_map(|(_, names)| names)
            .collect()
    }
}

/// A `status_pages:` entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageSpec {
    slug: String,
    title: String,
    description: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    targets: Vec<String>,
    footer: Option<String>,
}

/// Checks `specs` against the file's `targets`; `group_named` says whether a group
/// exists. An error names the page and what is wrong.
pub(crate) fn pages(
    specs: Vec<PageSpec>,
    targets: &[Target],
    group_named: &dyn Fn(&str) -> bool,
) -> Result<Vec<StatusPage>, String> {
    let mut pages: Vec<StatusPage> = Vec::with_capacity(specs.len());
    for (i, spec) in specs.into_iter().enumerate() {
        let at = format!("status_pages[{i}] ({})", spec.slug);
        let slug_ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if spec.slug.is_empty() || spec.slug.len() > MAX_SLUG || !spec.slug.chars().all(slug_ok) {
            return Err(format!(
                "{at}: slug must be 1 to {MAX_SLUG} of a-z, 0-9 and '-'"
            ));
        }
        if pages.iter().any(|p| p.slug == spec.slug) {
            return Err(format!("{at}: slug used twice"));
        }
        if spec.title.trim().is_empty() {
            return Err(format!("{at}: title is empty"));
        }
        if spec.groups.is_empty() && spec.targets.is_empty() {
            return Err(format!("{at}: lists no groups and no targets"));
        }
        if let Some(g) = spec.groups.iter().find(|g| !group_named(g)) {
            return Err(format!("{at}: no group is named {g:?}"));
        }
        if let Some(t) = spec
            .targets
            .iter()
            .find(|t| targets.iter().all(|known| known.name != **t))
        {
            return Err(format!("{at}: no target is named {t:?}"));
        }
        pages.push(StatusPage {
            slug: spec.slug,
            title: spec.title,
            description: spec.description,
            groups: spec.groups,
            targets: spec.targets,
            footer: spec.footer,
        });
    }
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::targets::Targets;

    const TARGETS: &str = "targets:\n\
        - {name: orders, url: 'http://orders.internal/', group: shop}\n\
        - {name: payments, url: 'http://payments.internal/', group: shop}\n\
        - {name: search, url: 'http://search.internal/'}\n";

    fn parse(pages: &str) -> Result<Targets, String> {
        Targets::parse(
            &format!("{TARGETS}status_pages:\n{pages}"),
            Duration::from_secs(10),
        )
    }

    #[test]
    fn a_page_lists_its_groups_then_its_own_targets_once_each() {
        let file = parse(
            "- {slug: shop-1, title: Shop, groups: [shop], targets: [search, orders], footer: Hi}\n",
        )
        .expect("parses");
        let page = &file.status_pages[0];
        assert_eq!(page.footer.as_deref(), Some("Hi"));
        assert_eq!(
            page.sections(&file.targets),
            vec![
                (
                    Some("shop".to_owned()),
                    vec!["orders".to_owned(), "payments".to_owned()]
                ),
                (None, vec!["search".to_owned()]),
            ]
        );
        assert_eq!(page.names(&file.targets), ["orders", "payments", "search"]);
    }

    #[test]
    fn a_bad_page_is_refused_by_name() {
        for (pages, why) in [
            (
                "- {slug: Shop, title: x, groups: [shop]}\n",
                "status_pages[0] (Shop): slug",
            ),
            ("- {slug: a.b, title: x, groups: [shop]}\n", "slug must be"),
            (
                "- {slug: shop, title: x, groups: [shop]}\n- {slug: shop, title: y, targets: [search]}\n",
                "status_pages[1] (shop): slug used twice",
            ),
            (
                "- {slug: shop, title: x, groups: [ops]}\n",
                "no group is named \"ops\"",
            ),
            (
                "- {slug: shop, title: x, targets: [ledger]}\n",
                "no target is named \"ledger\"",
            ),
            (
                "- {slug: shop, title: x}\n",
                "lists no groups and no targets",
            ),
            (
                "- {slug: shop, title: ' ', groups: [shop]}\n",
                "title is empty",
            ),
            (
                "- {slug: shop, title: x, groups: [shop], url: y}\n",
                "unknown field",
            ),
        ] {
            let err = parse(pages).expect_err(pages);
            assert!(err.contains(why), "{pages}: {err}");
        }
    }
}
