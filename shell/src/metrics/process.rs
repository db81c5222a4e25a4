//! `process_*`, as Prometheus's Go client reports them for etcd, read
//! from `/proc` at each scrape (Linux; elsewhere they stay at zero).

use prometheus::{Counter, Gauge, Opts, Registry};

use super::{advance_to, register};

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`, 100 on every
/// Linux Prometheus's own procfs reader supports).
const TICKS_PER_SECOND: f64 = 100.0;

pub(super) struct ProcessMetrics {
    cpu_seconds: Counter,
    resident_memory_bytes: Gauge,
    virtual_memory_bytes: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
    start_time_seconds: Gauge,
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Gauge {
    register(
        registry,
        Gauge::with_opts(Opts::new(name, help)).expect("valid metric"),
    )
}

impl ProcessMetrics {
    pub(super) fn new(registry: &Registry) -> Self {
        Self {
            cpu_seconds: register(
                registry,
                Counter::with_opts(Opts::new(
                    "process_cpu_seconds_total",
                    "Total user and system CPU time spent in seconds.",
                ))
                .expect("valid metric"),
            ),
            resident_memory_bytes: gauge(
                registry,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            ),
            virtual_memory_bytes: gauge(
                registry,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
            ),
            open_fds: gauge(
                registry,
                "process_open_fds",
                "Number of open file descriptors.",
            ),
            max_fds: gauge(
                registry,
                "process_max_fds",
                "Maximum number of open file descriptors.",
            ),
            start_time_seconds: gauge(
                registry,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
            ),
        }
    }

    /// Reads the process's figures now; one that cannot be read keeps
    /// its last value.
    pub(super) fn refresh(&self) {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        if let Some(stat) = read("/proc/self/stat").and_then(|s| Stat::parse(&s)) {
            advance_to(
                &self.cpu_seconds,
                (stat.user_ticks + stat.system_ticks) as f64 / TICKS_PER_SECOND,
            );
            if let Some(boot_seconds) = read("/proc/stat").and_then(|s| boot_time_seconds(&s)) {
                self.start_time_seconds
                    .set(boot_seconds as f64 + stat.start_ticks as f64 / TICKS_PER_SECOND);
            }
        }
        if let Some(status) = read("/proc/self/status") {
            if let Some(kib) = status_kib(&status, "VmRSS:") {
                self.resident_memory_bytes.set((kib * 1024) as f64);
            }
            if let Some(kib) = status_kib(&status, "VmSize:") {
                self.virtual_memory_bytes.set((kib * 1024) as f64);
            }
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(fds.count() as f64);
        }
        if let Some(limit) = read("/proc/self/limits").and_then(|s| open_files_limit(&s)) {
            self.max_fds.set(limit);
        }
    }
}

/// What the scrape takes from `/proc/self/stat`.
#[derive(Debug, PartialEq)]
struct Stat {
    user_ticks: u64,
    system_ticks: u64,
    start_ticks: u64,
}

impl Stat {
    /// Fields 14, 15 and 22 (`utime`, `stime`, `starttime`), counted after
    /// the command name, which may hold spaces and parentheses.
    fn parse(text: &str) -> Option<Self> {
        let after_name = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // `after_name` starts at field 3 (the state).
        let field = |n: usize| fields.get(n - 3)?.parse().ok();
        Some(Self {
            user_ticks: field(14)?,
            system_ticks: field(15)?,
            start_ticks: field(22)?,
        })
    }
}

/// `btime` of `/proc/stat`: when the system booted, in Unix seconds.
fn boot_time_seconds(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

/// A `Vm...:   1234 kB` line of `/proc/self/status`.
fn status_kib(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        l.strip_prefix(key)?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// The soft limit on open files in `/proc/self/limits`.
fn open_files_limit(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    match soft {
        "unlimited" => Some(f64::INFINITY),
        n => n.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read() {
        let stat = "4242 (e2d (x) y) S 1 4242 4242 0 -1 4194560 2000 0 0 0 150 25 0 0 20 0 9 0 123456 999 55 18446744073709551615";
        assert_eq!(
            Stat::parse(stat),
            Some(Stat {
                user_ticks: 150,
                system_ticks: 25,
                start_ticks: 123456
            })
        );
        assert_eq!(
            boot_time_seconds("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
        assert_eq!(
            status_kib(
                "Name:\te2d\nVmSize:\t  10240 kB\nVmRSS:\t    2048 kB\n",
                "VmRSS:"
            ),
            Some(2048)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(open_files_limit(limits), Some(1024.0));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_measured() {
        let registry = Registry::new();
        let process = ProcessMetrics::new(&registry);
        process.refresh();
        assert!(process.resident_memory_bytes.get() > 0.0);
        assert!(process.open_fds.get() > 0.0);
        assert!(process.start_time_seconds.get() > 1_600_000_000.0);
    }
}
