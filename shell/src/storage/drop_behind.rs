//! Keeps a bulk load from filling the page cache: once a table file of
//! the load is written and synced, its pages are handed back to the
//! kernel, so the load streams through a few tables' worth of cache
//! instead of taking in gigabytes of it.
//!
//! A load writes each table file once, front to back, and the storage
//! engine syncs it before it starts the next one, so a finished table's
//! pages are clean and dropping them costs no write. Taking in a
//! multi-GiB snapshot otherwise dirties that much memory at once: the
//! kernel throttles the writer when the dirty pages pass its limit, and it
//! takes every page from the free memory (which a virtual machine may have
//! handed back to its host, each page then costing a fault to take
//! again). Dropped pages are free again at once, so the next table's
//! writes reuse them. What a new member reads first then comes from disk,
//! as after a restart.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Bytes a load writes between two looks for finished table files: about
/// half the table size the storage engine gives a load.
pub const LOOK_EVERY_BYTES: usize = 32 * 1024 * 1024;

/// The table files of one bulk load into one keyspace's `tables` folder.
pub struct DropBehind {
    dir: PathBuf,
    /// Table ids in the folder before the load: the cache of those is the
    /// readers', not the load's.
    before: BTreeSet<u64>,
    /// Table ids whose pages were already dropped.
    dropped: BTreeSet<u64>,
}

impl DropBehind {
    /// For a load into the tables in `dir`, which holds the files named by
    /// their table ids.
    pub fn new(dir: PathBuf) -> Self {
        let before = table_ids(&dir).into_iter().collect();
        Self {
            dir,
            before,
            dropped: BTreeSet::new(),
        }
    }

    /// Drops the pages of the load's table files but its newest, which
    /// may still be written.
    pub fn drop_finished(&mut self) {
        let mut new = self.new_tables();
        new.pop();
        self.drop_pages_of(new);
    }

    /// Drops the pages of all of the load's table files: call once the
    /// load's tables are synced.
    pub fn drop_all(&mut self) {
        let new = self.new_tables();
        self.drop_pages_of(new);
    }

    /// Ids of the tables that came after the load started and whose pages
    /// are still kept, in ascending order.
    fn new_tables(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = table_ids(&self.dir)
            .into_iter()
            .filter(|id| !self.before.contains(id) && !self.dropped.contains(id))
            .collect();
        ids.sort_unstable();
        ids
    }

    fn drop_pages_of(&mut self, ids: Vec<u64>) {
        for id in ids {
            // Advice only: a file that went (compacted away) or a kernel
            // without the call leaves the pages to the kernel's own
            // choice, as before.
            let _ = drop_cached_pages(&self.dir.join(id.to_string()));
            self.dropped.insert(id);
        }
    }
}

/// The ids of the table files in `dir`; an unreadable folder has none (the
/// load itself fails on it).
fn table_ids(dir: &Path) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Asks the kernel to drop `path`'s clean pages from its cache.
#[cfg(target_os = "linux")]
fn drop_cached_pages(path: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path)?;
    // SAFETY: the descriptor is open for the whole call; the advice
    // changes no memory of this process.
    let error = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    match error {
        0 => Ok(()),
        errno => Err(std::io::Error::from_raw_os_error(errno)),
    }
}

/// Elsewhere there is no such advice: the file is only looked for.
#[cfg(not(target_os = "linux"))]
fn drop_cached_pages(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_loads_finished_tables_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str| std::fs::write(dir.path().join(name), b"table").unwrap();
        write("3");
        write("7");
        let mut drop_behind = DropBehind::new(dir.path().to_path_buf());
        write("8");
        write("10");
        write("9");
        write("not-a-table");
        assert_eq!(drop_behind.new_tables(), vec![8, 9, 10]);

        drop_behind.drop_finished();
        // 10, the newest, may still be written.
        assert_eq!(drop_behind.dropped, BTreeSet::from([8, 9]));
        assert_eq!(drop_behind.new_tables(), vec![10]);

        write("11");
        drop_behind.drop_finished();
        assert_eq!(drop_behind.dropped, BTreeSet::from([8, 9, 10]));

        drop_behind.drop_all();
        assert_eq!(drop_behind.dropped, BTreeSet::from([8, 9, 10, 11]));
        // The tables from before the load are the readers'.
        assert!(!drop_behind.dropped.contains(&3) && !drop_behind.dropped.contains(&7));
        assert!(drop_behind.new_tables().is_empty());
    }

    #[test]
    fn dropping_the_pages_of_a_file_keeps_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1");
        let bytes: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        std::fs::File::open(&path).unwrap().sync_all().unwrap();
        drop_cached_pages(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert!(drop_cached_pages(&dir.path().join("gone")).is_err());
    }
}
