//! Keeps the targets file in force: read at start (a bad file stops the start, with
//! the reason, like a bad flag), then read again every [`CHECK_EVERY`]; a changed file that parses
//! replaces the targets at once, a bad one is logged at ERROR and the last good one
//! stays. The file is read whole each time rather than watched for events, so a
//! Kubernetes ConfigMap update (a symlink swap) is seen like an edit in place.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

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
    /// Its text, to tell when it changed.
    text: String,
    /// What it lists.
    pub targets: Targets,
}

impl Loaded {
    /// Reads and checks `path`; `interval` is the interval of targets that name none.
    pub fn read(path: &Path, interval: Duration) -> Result<Self, FileError> {
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
        let targets = Targets::parse(&text, interval).map_err(fail)?;
        Ok(Loaded {
            path: path.to_owned(),
            text,
            targets,
        })
    }
}

/// Keeps `loaded` in force, reading its file again every [`CHECK_EVERY`] until
/// `stop`; `interval` as for [`Loaded::read`]. Must run on the runtime.
pub fn keep(loaded: Loaded, interval: Duration, stop: CancellationToken) -> Current {
    announce(&loaded, "targets loaded");
    let (tx, rx) = watch::channel(Arc::new(loaded.targets.clone()));
    tokio::spawn(async move {
        let mut last = loaded.text;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(CHECK_EVERY) => {}
            }
            let path = loaded.path.clone();
            let read = tokio::task::spawn_blocking(move || std::fs::read(&path)).await;
            let text = match read {
                Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "targets file unreadable; the last good one stays");
                    continue;
                }
                Err(_) => continue,
            };
            if text == last {
                continue;
            }
            match Loaded::read(&loaded.path, interval) {
                Ok(new) => {
                    announce(&new, "targets reloaded");
                    tx.send_replace(Arc::new(new.targets));
                }
                Err(e) => {
                    count(&tx.borrow(), "error");
                    tracing::error!(error = %e, "targets file refused; the last good one stays in force");
                }
            }
            // Reported once per change, not at every check.
            last = text;
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
