//! Fail-stop: a panic anywhere (a broken invariant, raft-rs's `fatal!`, a
//! bug) ends the process, so a member never goes on serving with one of its
//! tasks gone; so does a read of its stored data that fails; and locks are
//! taken through helpers that refuse state a panicking holder left behind.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use e2d_core::storage::StorageError;

/// The exit status after a panic (a Go program such as etcd exits with the
/// same after one).
pub const PANIC_EXIT_CODE: i32 = 2;

const POISONED: &str =
    "a task panicked while it held this lock: what the lock guards cannot be trusted";

/// Set while a removed member's runtime is shut down before the member
/// starts over: nothing of it serves any more, and its tasks are dropped.
static RUNTIME_RETIRING: AtomicBool = AtomicBool::new(false);

/// Runs `retire` (the shutdown of a runtime no member serves from any
/// more). A task of it that polls a timer while it stops panics with
/// tokio's "being shutdown"; that panic does not stop the process, as the
/// runtime and the member it ran are discarded whole.
pub fn retiring_runtime(retire: impl FnOnce()) {
    RUNTIME_RETIRING.store(true, Ordering::SeqCst);
    retire();
    RUNTIME_RETIRING.store(false, Ordering::SeqCst);
}

/// Whether a panic with `message` belongs to a runtime being retired.
fn from_retiring_runtime(message: &str) -> bool {
    RUNTIME_RETIRING.load(Ordering::SeqCst) && message.contains("is being shutdown")
}

/// Makes the first panic end the process, after the usual report of the
/// panic's message and place. For the binary: a library embedding the
/// shell (the tests, the simulator) keeps the panic behaviour it chose.
pub fn stop_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if from_retiring_runtime(&info.to_string()) {
            tracing::warn!(
                "{info}; a task of the stopped member's runtime ended while it shut down"
            );
            return;
        }
        report(info);
        tracing::error!(
            "{info}; e2d stops: a panic is a bug or a broken invariant, and a member must not serve with part of it gone. \
             Its data on disk is as a crash would leave it: start it again, and report the message if it comes back"
        );
        std::process::exit(PANIC_EXIT_CODE);
    }));
}

/// The exit status of a member stopped by a failed read of its data (as
/// of one whose raft driver cannot go on).
pub const UNREADABLE_DATA_EXIT_CODE: i32 = 1;

/// Stops the member after a read of its stored data failed (damage that
/// the storage's checksums found, or an I/O error): it cannot answer from
/// that data, and a member that answers some reads and fails others is
/// serving half alive.
pub fn stop_on_unreadable_data(error: &StorageError) -> ! {
    tracing::error!("{error}. {}", crate::storage::UNREADABLE_DATA_WAY_OUT);
    std::process::exit(UNREADABLE_DATA_EXIT_CODE);
}

pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().expect(POISONED)
}

pub fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().expect(POISONED)
}

pub fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().expect(POISONED)
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use std::process::Command;

    #[test]
    fn only_a_retiring_runtimes_shutdown_panic_is_let_pass() {
        let shutdown =
            "panicked at entry.rs:534:9:\nA Tokio 1.x context was found, but it is being shutdown.";
        assert!(!super::from_retiring_runtime(shutdown));
        super::retiring_runtime(|| {
            assert!(super::from_retiring_runtime(shutdown));
            assert!(!super::from_retiring_runtime(
                "panicked at x.rs:1:1:\nan invariant broke"
            ));
        });
        assert!(!super::from_retiring_runtime(shutdown));
    }

    /// Set in the environment of the child process the test starts.
    const CHILD_ENV: &str = "E2D_FAIL_STOP_CHILD";

    /// In the child: a task panics on a runtime like the server's, while
    /// the main thread would go on forever.
    #[test]
    #[ignore = "run as a child process by a_panic_in_any_task_ends_the_process"]
    fn panicking_child() {
        if std::env::var_os(CHILD_ENV).is_none() {
            return;
        }
        super::stop_on_panic();
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        runtime.block_on(async {
            tokio::spawn(async { panic!("planted panic in a task") });
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        });
        unreachable!("the panic ends the process first");
    }

    #[test]
    fn a_panic_in_any_task_ends_the_process() {
        let exe = std::env::current_exe().expect("the test binary");
        let output = Command::new(exe)
            .args([
                "--exact",
                "fail_stop::tests::panicking_child",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD_ENV, "1")
            .output()
            .expect("run the child");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(super::PANIC_EXIT_CODE),
            "{stderr}"
        );
        assert!(stderr.contains("planted panic in a task"), "{stderr}");
    }

    #[test]
    fn a_poisoned_lock_is_refused() {
        let mutex = std::sync::Arc::new(std::sync::Mutex::new(1));
        let held = mutex.clone();
        let _ = std::thread::spawn(move || {
            let _guard = held.lock();
            panic!("planted panic while holding the lock");
        })
        .join();
        let taken = std::panic::catch_unwind(|| *super::lock(&mutex));
        assert!(taken.is_err(), "a poisoned lock was handed out");
    }
}
