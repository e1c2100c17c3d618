//! Keeps the targets file in force: read at start (a bad file stops the start, with
//! the reason, like a bad flag), then read again every [`CHECK_EVERY`]; a changed file that parses
//! replaces the targets at once, a bad one is logged at ERROR and the last good one
//! stays. The file is read whole each time rather than watched for events, so a
//! Kubernetes ConfigMap update (a symlink swap) is seen like an edit in place. The
//! files credentials are read from are read again with it, so a rotated Secret takes
//! effect without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::value::{Credentials, process_env};
use super::{FileError, MAX_FILE_BYTES, Targets};
use crate::telemetry::metric;

/// How often the file is read for changes.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The targets in force, as they change.
pub type Current = watch::Receiver<Arc<Targets>>;

/// A targets file as read and checked.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Where it is.
    pub path: PathBuf,
    /// Its text and the credential files it names, to tell when they changed.
    inputs: Inputs,
    /// What it lists.
    pub targets: Targets,
    /// Whether its reader needs the credentials it names.
    need: Credentials,
}

impl Loaded {
    /// Reads and checks `path`; `interval` is the interval of targets that name none;
    /// `need` says whether a credential that cannot be read is an error.
    pub fn read(path: &Path, interval: Duration, need: Credentials) -> Result<Self, FileError> {
        let fail = |reason: String| FileError {
            path: path.display().to_string(),
            reason,
        };
        let len = std::fs::metadata(path)
            .map_err(|e| fail(e.to_string()))?
            .len();
        if len > MAX_FILE_BYTES {
            return Err(fail(format!(
                "{len} bytes, more than the {MAX_FILE_BYTES} read"
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|_| fail("not UTF-8 text".into()))?;
        let targets = Targets::parse_with(&text, interval, &process_env, need).map_err(fail)?;
        Ok(Loaded {
            path: path.to_owned(),
            inputs: Inputs::of(text, &targets.files),
            targets,
            need,
        })
    }
}

/// What a targets file was made from: its text and the credential files it named.
#[derive(Debug, Clone, PartialEq)]
struct Inputs {
    text: String,
    /// A hash of each credential file's content (never the content itself), or of
    /// the error reading it.
    files: Vec<u64>,
}

impl Inputs {
    fn of(text: String, files: &[PathBuf]) -> Self {
        use std::hash::{Hash, Hasher};
        let files = files
            .iter()
            .map(|file| {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(file)
                    .map_err(|e| e.kind().to_string())
                    .hash(&mut hasher);
                hasher.finish()
            })
            .collect();
        Inputs { text, files }
    }
}

/// Keeps `loaded` in force, reading its file again every [`CHECK_EVERY`] until
/// `stop`; `interval` as for [`Loaded::read`]. Must run on the runtime.
pub fn keep(loaded: Loaded, interval: Duration, stop: CancellationToken) -> Current {
    announce(&loaded, "targets loaded");
    let (tx, rx) = watch::channel(Arc::new(loaded.targets.clone()));
    tokio::spawn(async move {
        let mut last = loaded.inputs;
        let mut files = loaded.targets.files;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(CHECK_EVERY) => {}
            }
            let (path, named) = (loaded.path.clone(), files.clone());
            let read = tokio::task::spawn_blocking(move || {
                std::fs::read(&path)
                    .map(|bytes| Inputs::of(String::from_utf8_lossy(&bytes).into_owned(), &named))
            })
            .await;
            let inputs = match read {
                Ok(Ok(inputs)) => inputs,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "targets file unreadable; the last good one stays");
                    continue;
                }
                Err(_) => continue,
            };
            if inputs == last {
                continue;
            }
            // Reported once per change, not at every check.
            last = match Loaded::read(&loaded.path, interval, loaded.need) {
                Ok(new) => {
                    announce(&new, "targets reloaded");
                    files.clone_from(&new.targets.files);
                    tx.send_replace(Arc::new(new.targets));
                    new.inputs
                }
                Err(e) => {
                    count(&tx.borrow(), "error");
                    tracing::error!(error = %e, "targets file refused; the last good one stays in force");
                    inputs
                }
            };
        }
    });
    rx
}

fn announce(loaded: &Loaded, what: &'static str) {
    tracing::info!(
        file = %loaded.path.display(),
        targets = loaded.targets.targets.len(),
        webhooks = loaded.targets.notify.len(),
        "{what}"
    );
    count(&loaded.targets, "ok");
}

fn count(targets: &Targets, result: &'static str) {
    metrics::counter!(metric::TARGETS_RELOADS.name, "result" => result).increment(1);
    metrics::gauge!(metric::TARGETS_CONFIGURED.name).set(targets.targets.len() as f64);
}
