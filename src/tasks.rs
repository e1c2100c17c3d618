//! Background tasks, stopped one way: each runs until a
//! [`CancellationToken`] is cancelled, and ends there, wherever it is.
//!
//! An owner that stops its tasks when it is dropped keeps the token's
//! [`DropGuard`](tokio_util::sync::DropGuard) (`token.clone().drop_guard()`); a task
//! that must stop before the others takes a child token
//! ([`CancellationToken::child_token`]) and is cancelled on its own.

use std::future::Future;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Spawns `task` until `stop` is cancelled: the task is then dropped where it is (at
/// its next `.await`). `name` is logged when it stops, at DEBUG.
pub fn spawn_until<F>(stop: CancellationToken, name: &'static str, task: F) -> JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        tokio::select! {
            // Cancellation first: once cancelled, the task is never polled again.
            biased;
            () = stop.cancelled() => tracing::debug!(task = name, "stopped"),
            () = task => {}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_ends_when_its_token_is_cancelled_or_its_guard_dropped() {
        let stop = CancellationToken::new();
        let forever = spawn_until(stop.clone(), "test", std::future::pending());
        stop.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(5), forever)
            .await
            .expect("stopped in time")
            .expect("no panic");

        let owner = CancellationToken::new();
        let guard = owner.clone().drop_guard();
        let child = spawn_until(owner.child_token(), "child", std::future::pending());
        drop(guard);
        tokio::time::timeout(std::time::Duration::from_secs(5), child)
            .await
            .expect("stopped in time")
            .expect("no panic");
    }

    #[tokio::test]
    async fn a_task_that_ends_on_its_own_is_not_held() {
        let stop = CancellationToken::new();
        let done = spawn_until(stop.clone(), "test", async {});
        tokio::time::timeout(std::time::Duration::from_secs(5), done)
            .await
            .expect("ended")
            .expect("no panic");
        assert!(!stop.is_cancelled());
    }
}
