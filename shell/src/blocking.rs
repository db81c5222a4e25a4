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

/// Runs `f`, which blocks (an fsync), on this worker thread after handing
/// the worker's other tasks to another thread, so they run meanwhile.
#[cfg(not(madsim))]
pub fn in_place<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// A simulated node has one thread: `f` runs as one step of its task.
#[cfg(madsim)]
pub fn in_place<R>(f: impl FnOnce() -> R) -> R {
    f()
}
