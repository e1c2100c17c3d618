//! Values of the targets file that may be credentials: a string in which `${NAME}`
//! stands for the environment variable `NAME`, or `{file: /path}`, the content of a
//! file (a mounted Kubernetes Secret; one trailing newline is dropped). So the file
//! itself, a ConfigMap, holds no credential.
//!
//! A variable that is not set or a file that cannot be read is an error that names
//! the variable or the file, never a value.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::redact::MASK;

/// Where `${NAME}` is looked up: the process environment, or a test's own table.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Whether the reader of a targets file needs its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    /// It sends them (the worker): a variable not set or a file not readable is an
    /// error.
    Required,
    /// It only shows the targets (the dashboard): a credential it cannot read stands
    /// as `***`, so it needs none of them.
    Optional,
}

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A value as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ValueSpec {
    /// Text, with `${NAME}` replaced.
    Text(String),
    /// A file's content.
    File {
        /// The file.
        file: PathBuf,
    },
}

/// A value read, and the file it came from (to notice when that file changes).
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The value.
    pub value: String,
    /// The file it was read from, if any.
    pub file: Option<PathBuf>,
    /// Whether every part was read (with [`Credentials::Optional`], what was not
    /// stands as `***`).
    pub complete: bool,
}

impl ValueSpec {
    /// The value, with variables replaced or the file read.
    pub fn resolve(&self, env: Env<'_>, need: Credentials) -> Result<Resolved, String> {
        let complete = std::cell::Cell::new(true);
        let mut resolved = match self {
            ValueSpec::Text(text) => Resolved {
                value: substitute(text, &|name| {
                    env(name).or_else(|| {
                        complete.set(false);
                        (need == Credentials::Optional).then(|| MASK.to_owned())
                    })
                })?,
                file: None,
                complete: true,
            },
            ValueSpec::File { file } => Resolved {
                value: match (read(file), need) {
                    (Err(_), Credentials::Optional) => {
                        complete.set(false);
                        MASK.to_owned()
                    }
                    (value, _) => value?,
                },
                file: Some(file.clone()),
                complete: true,
            },
        };
        resolved.complete = complete.get();
        Ok(resolved)
    }
}

/// The content of `file`, without one trailing newline.
pub fn read(file: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    Ok(text.strip_suffix('\r').unwrap_or(text).to_owned())
}

/// `text` with each `${NAME}` replaced by the variable's value; `$${` stands for a
/// literal `${`.
fn substitute(text: &str, env: Env<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = rest.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| "a ${ without its closing }".to_owned())?;
            let name = &after[..end];
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!("${{{name}}} is no environment variable name"));
            }
            let value =
                env(name).ok_or_else(|| format!("the environment variable {name} is not set"))?;
            out.push_str(&value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cret".to_owned())
    }

    #[test]
    fn variables_are_replaced_and_missing_ones_named() {
        let text = |t: &str| {
            ValueSpec::Text(t.into())
                .resolve(&env, Credentials::Required)
                .map(|r| r.value)
        };
        assert_eq!(text("Bearer ${TOKEN}").as_deref(), Ok("Bearer s3cret"));
        assert_eq!(
            text("cost: $5, $${TOKEN}").as_deref(),
            Ok("cost: $5, ${TOKEN}")
        );
        let missing = text("${NOPE}").expect_err("unset");
        assert!(missing.contains("NOPE"), "{missing}");
        assert!(text("${1X}").is_err());
        let shown = ValueSpec::Text("Bearer ${NOPE}".into())
            .resolve(&env, Credentials::Optional)
            .map(|r| r.value);
        assert_eq!(shown.as_deref(), Ok("Bearer ***"));
        assert!(text("${TOKEN").is_err());
    }

    #[test]
    fn a_file_is_read_without_its_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("svc-value-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("password");
        std::fs::write(&file, "pa55word\n").expect("write");
        let read = ValueSpec::File { file: file.clone() }
            .resolve(&env, Credentials::Required)
            .expect("read");
        assert_eq!(read.value, "pa55word");
        assert_eq!(read.file.as_deref(), Some(file.as_path()));
        let _ = std::fs::remove_dir_all(&dir);
        let gone = ValueSpec::File { file: file.clone() }
            .resolve(&env, Credentials::Required)
            .expect_err("gone");
        assert!(gone.contains("password"), "{gone}");
        let shown = ValueSpec::File { file }.resolve(&env, Credentials::Optional);
        assert_eq!(shown.map(|r| r.value).as_deref(), Ok("***"));
    }
}
