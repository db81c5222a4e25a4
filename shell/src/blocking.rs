//! Blocking work (files, whole-database scans) kept off the async workers.

use tokio::task::JoinHandle;

/// Runs `f` on tokio's blocking pool.
#[cfg(not(madsim))]
pub fn spawn<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    tokio::task::spawn_blocking(f)
}

/// A simulated node has no threads: `f` runs as one step of a task, which
/// simulated time does not see pass.
#[cfg(madsim)]
pub fn spawn<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    tokio::task::spawn(async move { f() })
}
