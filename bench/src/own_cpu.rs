//! The load generator's own CPU time: it shares the machine with the
//! server under test, so a throughput ratio between two servers carries
//! its cost in both denominators, and the report says how large it was.

use std::time::Duration;

/// User and system time of this whole process so far (every thread), or
/// `None` where the system will not say.
pub fn process_cpu() -> Option<Duration> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a valid, writable rusage that getrusage fills.
    let status = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if status != 0 {
        return None;
    }
    // SAFETY: getrusage returned 0, so it filled `usage`.
    let usage = unsafe { usage.assume_init() };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    Some(time(usage.ru_utime) + time(usage.ru_stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_done_shows_in_the_process_cpu() {
        let before = process_cpu().expect("getrusage answers on Linux");
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let after = process_cpu().expect("getrusage answers on Linux");
        assert!(
            after - before >= Duration::from_millis(30),
            "50 ms of spinning counted only {:?}",
            after - before
        );
    }
}
