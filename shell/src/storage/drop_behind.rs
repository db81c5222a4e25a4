//! Keeps a bulk load from filling the page cache and from stalling on its
//! own syncs: the table file being written has its writeback started as
//! it grows, and once a table file of the load is written and synced, its
//! pages are handed back to the kernel. The load streams through a few
//! tables' worth of cache instead of taking in gigabytes of it.
//!
//! A load writes each table file once, front to back, and the storage
//! engine syncs it when it moves on to the next one (the next file is
//! created first, then the finished one synced). The looks run on the
//! load's own thread between its writes, so at each look every table file
//! of the load but the newest is finished and synced. Started early, the
//! writeback runs beside the load, so that sync finds little left to
//! write (otherwise the load's thread waits out a whole table's write at
//! each one: 2.9 s of a 10 s load of 4.4 GB, as measured). A synced table's
//! pages are clean, so dropping them costs no write. Taking in a
//! multi-GiB snapshot otherwise dirties that much memory at once: the
//! kernel throttles the writer when the dirty pages pass its limit, and it
//! takes every page from the free memory (which a virtual machine may have
//! handed back to its host, each page then costing a fault to take
//! again). Dropped pages are free again at once, so the next table's
//! writes reuse them. What a new member reads first then comes from disk,
//! as after a restart.
//!
//! Table ids are shared with the keyspace's flushes and compactions, so a
//! table one of those writes during the load is taken for the load's:
//! its pages are dropped too (it was synced when written), which costs
//! its readers a read from disk and nothing else.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Bytes a load writes between two looks at its table files: an eighth of
/// the table size the storage engine gives a load, so a table's sync
/// waits for about that much at most.
const LOOK_EVERY_BYTES: usize = 8 * 1024 * 1024;

/// The table files of one bulk load into one keyspace's `tables` folder.
pub struct DropBehind {
    dir: PathBuf,
    /// Table ids in the folder before the load: the cache of those is the
    /// readers', not the load's. `None` when the folder could not be
    /// read: nothing is advised then.
    before: Option<BTreeSet<u64>>,
    /// Table ids whose pages were already dropped.
    dropped: BTreeSet<u64>,
    /// Bytes the load wrote since the last look.
    written_since_look_bytes: usize,
}

impl DropBehind {
    /// For a load into the tables in `dir`, which holds the files named by
    /// their table ids.
    pub fn new(dir: PathBuf) -> Self {
        let before = match table_ids(&dir) {
            Ok(ids) => Some(ids.into_iter().collect()),
            // No tables yet: the load creates the folder.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(BTreeSet::new()),
            Err(_) => None,
        };
        Self {
            dir,
            before,
            dropped: BTreeSet::new(),
            written_since_look_bytes: 0,
        }
    }

    /// Counts `bytes` the load wrote, and looks at its table files once
    /// every [`LOOK_EVERY_BYTES`].
    pub fn wrote(&mut self, bytes: usize) {
        self.written_since_look_bytes += bytes;
        if self.written_since_look_bytes >= LOOK_EVERY_BYTES {
            self.written_since_look_bytes = 0;
            self.look();
        }
    }

    /// Starts the writeback of the load's newest table file, which may
    /// still be written, and drops the pages of the others.
    fn look(&mut self) {
        let mut new = self.new_tables();
        if let Some(newest) = new.pop() {
            // Advice only, as below.
            let _ = advise(&self.dir.join(newest.to_string()), Advice::StartWriteback);
        }
        self.drop_pages_of(new);
    }

    /// Drops the pages of all of the load's table files, those dropped
    /// before too (a table another writer made may have been the newest at
    /// a look, and the load's own then dropped while it was written): call
    /// once the load's tables are synced.
    pub fn drop_all(&mut self) {
        self.dropped.clear();
        let new = self.new_tables();
        self.drop_pages_of(new);
    }

    /// Ids of the tables that came after the load started and whose pages
    /// are still kept, in ascending order.
    fn new_tables(&self) -> Vec<u64> {
        let (Some(before), Ok(ids)) = (&self.before, table_ids(&self.dir)) else {
            return Vec::new();
        };
        let mut ids: Vec<u64> = ids
            .into_iter()
            .filter(|id| !before.contains(id) && !self.dropped.contains(id))
            .collect();
        ids.sort_unstable();
        ids
    }

    fn drop_pages_of(&mut self, ids: Vec<u64>) {
        for id in ids {
            // Advice only: a file that went (compacted away) or a kernel
            // without the call leaves the pages to the kernel's own
            // choice, as before.
            let _ = advise(&self.dir.join(id.to_string()), Advice::DropCachedPages);
            self.dropped.insert(id);
        }
    }
}

/// The ids of the table files in `dir`.
fn table_ids(dir: &Path) -> std::io::Result<Vec<u64>> {
    Ok(std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

/// What [`advise`] asks of the kernel about a file.
#[derive(Clone, Copy)]
enum Advice {
    /// Drop its clean pages from the cache.
    DropCachedPages,
    /// Start writing its dirty pages, without waiting for them.
    StartWriteback,
}

/// Opens `path` and gives the kernel `advice` about it.
#[cfg(target_os = "linux")]
fn advise(path: &Path, advice: Advice) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path)?;
    let fd = file.as_raw_fd();
    match advice {
        // SAFETY: `fd` is open for the whole call; the advice changes no
        // memory of this process.
        Advice::DropCachedPages => {
            match unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED) } {
                0 => Ok(()),
                errno => Err(std::io::Error::from_raw_os_error(errno)),
            }
        }
        // SAFETY: as above; the call writes no memory of this process.
        Advice::StartWriteback => {
            match unsafe { libc::sync_file_range(fd, 0, 0, libc::SYNC_FILE_RANGE_WRITE) } {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        }
    }
}

/// Elsewhere there is no such advice: the file is only looked for.
#[cfg(not(target_os = "linux"))]
fn advise(path: &Path, _advice: Advice) -> std::io::Result<()> {
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

        drop_behind.wrote(LOOK_EVERY_BYTES - 1);
        assert!(drop_behind.dropped.is_empty(), "no look before 8 MiB");
        drop_behind.wrote(1);
        // 10, the newest, may still be written.
        assert_eq!(drop_behind.dropped, BTreeSet::from([8, 9]));
        assert_eq!(drop_behind.new_tables(), vec![10]);

        write("11");
        drop_behind.wrote(LOOK_EVERY_BYTES);
        assert_eq!(drop_behind.dropped, BTreeSet::from([8, 9, 10]));

        drop_behind.drop_all();
        // Every table of the load, those dropped at a look too.
        assert_eq!(drop_behind.dropped, BTreeSet::from([8, 9, 10, 11]));
        // The tables from before the load are the readers'.
        assert!(!drop_behind.dropped.contains(&3) && !drop_behind.dropped.contains(&7));
        assert!(drop_behind.new_tables().is_empty());
    }

    #[test]
    fn a_folder_made_by_the_load_is_all_the_loads_and_an_unreadable_one_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let tables = dir.path().join("tables");
        let drop_behind = DropBehind::new(tables.clone());
        std::fs::create_dir(&tables).unwrap();
        std::fs::write(tables.join("1"), b"table").unwrap();
        assert_eq!(drop_behind.new_tables(), vec![1]);

        // What was there before cannot be told: nothing is advised.
        let not_a_folder = dir.path().join("file");
        std::fs::write(&not_a_folder, b"").unwrap();
        let drop_behind = DropBehind::new(not_a_folder.clone());
        std::fs::remove_file(&not_a_folder).unwrap();
        std::fs::create_dir(&not_a_folder).unwrap();
        std::fs::write(not_a_folder.join("1"), b"table").unwrap();
        assert!(drop_behind.new_tables().is_empty());
    }

    #[test]
    fn the_advice_keeps_a_files_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1");
        let bytes: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        advise(&path, Advice::StartWriteback).unwrap();
        std::fs::File::open(&path).unwrap().sync_all().unwrap();
        advise(&path, Advice::DropCachedPages).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        let gone = dir.path().join("gone");
        for advice in [Advice::StartWriteback, Advice::DropCachedPages] {
            assert!(advise(&gone, advice).is_err());
        }
    }
}
