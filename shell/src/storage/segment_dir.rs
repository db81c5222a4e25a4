//! Segment files of the raft log on a real disk: `{seq:016x}.wal` in one
//! directory, each preallocated to its full size when created and then
//! written from the front. Files are 0600 in a 0700 directory, as etcd's.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::durable_file;

pub struct SegmentDir {
    path: PathBuf,
}

impl SegmentDir {
    /// Opens the directory, creating it when missing.
    pub fn open(path: &Path) -> io::Result<Self> {
        durable_file::create_dir_all(path)?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    fn file_path(&self, seq: u64) -> PathBuf {
        self.path.join(super::segment_file_name(seq))
    }

    /// The segments present, oldest first. Other files are left alone.
    pub fn list(&self) -> io::Result<Vec<u64>> {
        let mut seqs = Vec::new();
        for entry in std::fs::read_dir(&self.path)? {
            let name = entry?.file_name();
            let Some(seq) = name.to_str().and_then(super::segment_seq) else {
                continue;
            };
            seqs.push(seq);
        }
        seqs.sort_unstable();
        Ok(seqs)
    }

    pub fn read(&self, seq: u64) -> io::Result<Vec<u8>> {
        std::fs::read(self.file_path(seq))
    }

    /// Cuts segment `seq` to `len` bytes, durably: what followed was a
    /// write a crash interrupted.
    pub fn truncate(&self, seq: u64, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(self.file_path(seq))?;
        file.set_len(len)?;
        file.sync_all()
    }

    /// Opens segment `seq` for writing at `offset`.
    pub fn reopen(&self, seq: u64, offset: u64) -> io::Result<SegmentFile> {
        let file = OpenOptions::new().write(true).open(self.file_path(seq))?;
        Ok(SegmentFile { file, offset })
    }

    /// Creates segment `seq` of `bytes` (reading as zeros), durably
    /// present in the directory.
    pub fn create(&self, seq: u64, bytes: u64) -> io::Result<SegmentFile> {
        let file = durable_file::create_new(&self.file_path(seq))?;
        file.set_len(bytes)?;
        file.sync_all()?;
        durable_file::sync_dir(&self.path)?;
        Ok(SegmentFile { file, offset: 0 })
    }

    /// Removes segment `seq`. Not synced: a segment that comes back after
    /// a crash holds only entries the log has moved past.
    pub fn remove(&self, seq: u64) -> io::Result<()> {
        std::fs::remove_file(self.file_path(seq))
    }
}

/// A segment open for writing at its end.
pub struct SegmentFile {
    file: File,
    offset: u64,
}

impl SegmentFile {
    /// Bytes written from the front.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all_at(bytes, self.offset)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// fdatasync, as etcd's WAL: the records and, past the preallocated
    /// size, the file's length; mtime can wait.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable_file::permission_bits as mode;

    #[test]
    fn segments_are_private() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("data/wal");
        let dir = SegmentDir::open(&path).unwrap();
        dir.create(1, 4096).unwrap();
        assert_eq!(mode(&root.path().join("data")), 0o700);
        assert_eq!(mode(&path), 0o700);
        assert_eq!(
            mode(&path.join(crate::storage::segment_file_name(1))),
            0o600
        );
    }
}
