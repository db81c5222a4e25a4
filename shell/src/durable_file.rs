//! How e2d creates files and directories: private to the user it runs as,
//! as etcd keeps its data (directories 0700, files 0600; the umask can
//! only narrow these), and, for a file a reader or a crash must never see
//! half-written, replaced whole: written beside its target, synced,
//! renamed over it, and the rename synced in the directory.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Mode of the directories e2d creates: etcd's `PrivateDirMode`.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of the files e2d creates: etcd's `PrivateFileMode`.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// Creates `dir` and its missing parents, each 0700. Directories that
/// exist keep their mode.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
}

/// Creates the directory `dir`, 0700; fails if it exists.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().mode(PRIVATE_DIR_MODE).create(dir)
}

/// Creates a new file at `path`, 0600, open for reading and writing;
/// fails if it exists.
pub fn create_new(path: &Path) -> io::Result<File> {
    create_new_with_mode(path, PRIVATE_FILE_MODE)
}

/// Creates `path` (0600) or empties the file there, open for writing.
pub fn create(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(PRIVATE_FILE_MODE)
        .open(path)
}

fn create_new_with_mode(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

/// A file in `dir` (created 0700 when missing) with no name: created 0600,
/// then unlinked, so it vanishes with its handle, even after a crash.
pub fn unnamed_in(dir: &Path) -> io::Result<File> {
    create_dir_all(dir)?;
    let path = dir.join(format!(".unnamed-{}-{}.tmp", std::process::id(), next()));
    let file = create_new(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

/// A temporary file path next to `path`, unique in this process. It
/// starts with a dot, so listings of snapshots pass over it.
pub fn sibling_temp(path: &Path, purpose: &str) -> PathBuf {
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(
        ".{file_name}.{purpose}-{}-{}",
        std::process::id(),
        next()
    ))
}

/// A number not handed out before in this process, for unique names.
fn next() -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Replaces `path` with `bytes`, 0600, durably: after a crash the file
/// holds either its old contents or all of `bytes`.
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_with(path, PRIVATE_FILE_MODE, |file| file.write_all(bytes))
}

/// Replaces `path` with a new file of `mode` that `write` fills, durably:
/// a reader, or the file after a crash, shows either the old file or the
/// whole new one. On failure the old file stays and nothing is left
/// beside it.
pub fn replace_with<T>(
    path: &Path,
    mode: u32,
    write: impl FnOnce(&mut File) -> io::Result<T>,
) -> io::Result<T> {
    let temp = sibling_temp(path, "writing");
    let replaced = (|| {
        let mut file = create_new_with_mode(&temp, mode)?;
        let value = write(&mut file)?;
        file.sync_all()?;
        rename_synced(&temp, path)?;
        Ok(value)
    })();
    if replaced.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    replaced
}

/// Renames the whole, synced file `from` to `to` and makes the rename
/// durable in `to`'s directory.
pub fn rename_synced(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)?;
    sync_dir(parent_dir(to))
}

/// Makes the creation, rename or removal of a file in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory `path` is in: "." for a bare file name.
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The permission bits of `path`, for tests that check them.
#[cfg(test)]
pub(crate) fn permission_bits(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::permission_bits as mode;
    use super::*;

    /// The names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn directories_and_files_are_private() {
        let root = tempfile::tempdir().unwrap();
        let nested = root.path().join("a/b");
        create_dir_all(&nested).unwrap();
        create_dir(&nested.join("c")).unwrap();
        for dir in ["a", "a/b", "a/b/c"] {
            assert_eq!(mode(&root.path().join(dir)), 0o700, "{dir}");
        }
        create_new(&nested.join("new")).unwrap();
        create(&nested.join("created")).unwrap();
        replace(&nested.join("replaced"), b"x").unwrap();
        for file in ["new", "created", "replaced"] {
            assert_eq!(mode(&nested.join(file)), 0o600, "{file}");
        }
        assert!(create_new(&nested.join("new")).is_err());
    }

    #[test]
    fn a_replace_puts_in_all_or_nothing_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        replace(&path, b"first").unwrap();
        replace(&path, b"old").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["file"]);
        let failed = replace_with(&path, PRIVATE_FILE_MODE, |file| {
            file.write_all(b"half")?;
            Err::<(), _>(io::Error::other("disk full"))
        });
        assert_eq!(failed.unwrap_err().to_string(), "disk full");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["file"]);
    }

    #[test]
    fn replacing_a_readable_file_makes_it_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("name");
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        replace(&path, b"new").unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn an_unnamed_file_leaves_nothing_in_its_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("tmp");
        let mut file = unnamed_in(&dir).unwrap();
        file.write_all(b"x").unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert!(names(&dir).is_empty());
    }
}
