//! Segment files of the raft log under `--cfg madsim`: in memory, outliving
//! the simulated node that wrote them, with a real file's crash semantics.
//! Written bytes are readable at once and durable after a sync; a crash
//! keeps the synced bytes and some of the rest, cut anywhere (a write the
//! power interrupted).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Default)]
struct MemoryFile {
    bytes: Vec<u8>,
    synced_len: usize,
}

/// Every segment file of this process by path.
static FILES: Mutex<BTreeMap<PathBuf, Arc<Mutex<MemoryFile>>>> = Mutex::new(BTreeMap::new());

fn files() -> MutexGuard<'static, BTreeMap<PathBuf, Arc<Mutex<MemoryFile>>>> {
    crate::fail_stop::lock(&FILES)
}

fn lock(file: &Mutex<MemoryFile>) -> MutexGuard<'_, MemoryFile> {
    crate::fail_stop::lock(file)
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} does not exist", path.display()),
    )
}

/// Every file under `dir` loses what it had not synced, but for a part
/// that `seed` picks, which may end inside a record.
pub fn crash(dir: &Path, seed: usize) {
    for (path, file) in files().iter() {
        if path.starts_with(dir) {
            let mut file = lock(file);
            let unsynced = file.bytes.len() - file.synced_len;
            let kept = seed.wrapping_mul(2_654_435_761) % (unsynced + 1);
            let len = file.synced_len + kept;
            file.bytes.truncate(len);
            file.synced_len = len;
        }
    }
}

/// Changes one byte inside a synced record of the newest segment in `dir`,
/// one that another synced record follows: damage, as a failing disk
/// leaves it, never a write a crash cut short. `seed` picks the record and
/// the byte. Returns the file and the offset changed, or `None` when the
/// segment holds fewer than two synced records.
pub fn damage_synced_record(dir: &Path, seed: usize) -> Option<(PathBuf, usize)> {
    use e2d_core::wal::RECORD_HEADER_BYTES;
    let files = files();
    let (path, file) = files
        .iter()
        .filter(|(path, _)| path.parent() == Some(dir))
        .filter(|(path, _)| {
            path.file_name()
                .and_then(|name| super::segment_seq(name.to_str()?))
                .is_some()
        })
        .max_by_key(|(path, _)| path.as_path())?;
    let mut file = lock(file);
    let synced = &file.bytes[..file.synced_len];
    let mut records = Vec::new();
    let mut offset = 0;
    while let Some(header) = synced.get(offset..offset + RECORD_HEADER_BYTES) {
        let length = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let end = offset + RECORD_HEADER_BYTES + length;
        if length == 0 || end > synced.len() {
            break;
        }
        records.push((offset, length));
        offset = end;
    }
    if records.len() < 2 {
        return None;
    }
    let (start, length) = records[seed % (records.len() - 1)];
    let at = start + RECORD_HEADER_BYTES + (seed / 7) % length;
    file.bytes[at] ^= 0x40;
    Some((path.clone(), at))
}

/// Follows a directory rename.
pub fn moved(from: &Path, to: &Path) {
    move_under(&mut files(), from, to);
}

/// Moves the entries of `by_path` under `from` to the same place under `to`.
pub(super) fn move_under<V>(by_path: &mut BTreeMap<PathBuf, V>, from: &Path, to: &Path) {
    let under: Vec<PathBuf> = by_path
        .keys()
        .filter(|path| path.starts_with(from))
        .cloned()
        .collect();
    for path in under {
        let value = by_path.remove(&path).expect("listed just now");
        let rest = path.strip_prefix(from).expect("filtered by prefix");
        by_path.insert(to.join(rest), value);
    }
}

/// Throws away every file under `root`.
pub fn destroy_under(root: &Path) {
    files().retain(|path, _| !path.starts_with(root));
}

pub struct SegmentDir {
    path: PathBuf,
}

impl SegmentDir {
    /// The directory is real (and created when missing), as on a real
    /// disk, so that renames and checks of the data dir see it; the files
    /// are in memory.
    pub fn open(path: &Path) -> io::Result<Self> {
        crate::durable_file::create_dir_all(path)?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    fn file_path(&self, seq: u64) -> PathBuf {
        self.path.join(super::segment_file_name(seq))
    }

    fn file(&self, seq: u64) -> io::Result<Arc<Mutex<MemoryFile>>> {
        let path = self.file_path(seq);
        files().get(&path).cloned().ok_or_else(|| not_found(&path))
    }

    pub fn list(&self) -> io::Result<Vec<u64>> {
        Ok(files()
            .keys()
            .filter(|path| path.parent() == Some(self.path.as_path()))
            .filter_map(|path| super::segment_seq(path.file_name()?.to_str()?))
            .collect())
    }

    pub fn read(&self, seq: u64) -> io::Result<Vec<u8>> {
        let file = self.file(seq)?;
        let bytes = lock(&file).bytes.clone();
        Ok(bytes)
    }

    pub fn truncate(&self, seq: u64, len: u64) -> io::Result<()> {
        let file = self.file(seq)?;
        let mut file = lock(&file);
        let len = usize::try_from(len).expect("a memory file fits in memory");
        file.bytes.truncate(len);
        file.synced_len = file.synced_len.min(len);
        Ok(())
    }

    pub fn reopen(&self, seq: u64, offset: u64) -> io::Result<SegmentFile> {
        let file = self.file(seq)?;
        lock(&file)
            .bytes
            .truncate(usize::try_from(offset).expect("a memory file fits in memory"));
        Ok(SegmentFile { file, offset })
    }

    /// Zero-filled segments read as their written bytes here: a reader
    /// stops at their end either way.
    pub fn create(&self, seq: u64, _bytes: u64) -> io::Result<SegmentFile> {
        let path = self.file_path(seq);
        let mut files = files();
        if files.contains_key(&path) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", path.display()),
            ));
        }
        let file = Arc::new(Mutex::new(MemoryFile::default()));
        files.insert(path, file.clone());
        Ok(SegmentFile { file, offset: 0 })
    }

    pub fn remove(&self, seq: u64) -> io::Result<()> {
        let path = self.file_path(seq);
        files()
            .remove(&path)
            .map(drop)
            .ok_or_else(|| not_found(&path))
    }
}

pub struct SegmentFile {
    file: Arc<Mutex<MemoryFile>>,
    offset: u64,
}

impl SegmentFile {
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        lock(&self.file).bytes.extend_from_slice(bytes);
        self.offset += bytes.len() as u64;
        Ok(())
    }

    pub fn sync(&self) -> io::Result<()> {
        let mut file = lock(&self.file);
        file.synced_len = file.bytes.len();
        Ok(())
    }
}
