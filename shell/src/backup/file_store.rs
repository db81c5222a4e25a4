//! A snapshot store in a directory (`file://<dir>`): each snapshot a file,
//! 0600, replaced whole (`durable_file`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;

use super::store::{StoreError, StoredObject};
use crate::durable_file;

/// Bytes copied per step.
const COPY_CHUNK_BYTES: usize = 1024 * 1024;

pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn error(&self, action: String, e: impl std::fmt::Display) -> StoreError {
        StoreError {
            store: format!("file://{}", self.dir.display()),
            action,
            reason: e.to_string(),
        }
    }

    async fn blocking<R: Send + 'static>(
        &self,
        action: String,
        f: impl FnOnce(PathBuf) -> std::io::Result<R> + Send + 'static,
    ) -> Result<R, StoreError> {
        let dir = self.dir.clone();
        match crate::blocking::spawn(move || f(dir)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.error(action, e)),
            Err(e) => Err(self.error(action, e)),
        }
    }

    pub async fn put(
        &self,
        name: &str,
        path: &Path,
        progress: &ProgressBar,
    ) -> Result<u64, StoreError> {
        let (name, from, progress) = (name.to_string(), path.to_path_buf(), progress.clone());
        self.blocking(format!("writing {name}"), move |dir| {
            durable_file::create_dir_all(&dir)?;
            let target = dir.join(&name);
            if let Some(size) = link_synced(&from, &target)? {
                progress.set_length(size);
                progress.inc(size);
                return Ok(size);
            }
            durable_file::replace_with(&target, durable_file::PRIVATE_FILE_MODE, |output| {
                copy(&from, output, &progress)
            })
        })
        .await
    }

    pub async fn list(&self) -> Result<Vec<StoredObject>, StoreError> {
        self.blocking("listing".into(), |dir| {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            let mut objects = Vec::new();
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(object) = stored_object(name, entry.metadata())? {
                    objects.push(object);
                }
            }
            Ok(objects)
        })
        .await
    }

    pub async fn get(
        &self,
        name: &str,
        to: &Path,
        progress: &ProgressBar,
    ) -> Result<u64, StoreError> {
        let (name, to, progress) = (name.to_string(), to.to_path_buf(), progress.clone());
        self.blocking(format!("reading {name}"), move |dir| {
            copy_synced(&dir.join(&name), &to, &progress)
        })
        .await
    }

    pub async fn delete(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_string();
        self.blocking(
            format!("deleting {name}"),
            move |dir| match std::fs::remove_file(dir.join(&name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        )
        .await
    }
}

/// The snapshot a directory entry named `name` holds, if any: not a
/// temporary file (their names start with a dot) nor a directory. An entry
/// gone between reading the directory and looking at it (a temporary file
/// renamed into place, a snapshot pruned) is passed over: the listing is of
/// one moment, and a writer or a pruner may be at work beside it.
fn stored_object(
    name: String,
    metadata: std::io::Result<std::fs::Metadata>,
) -> std::io::Result<Option<StoredObject>> {
    if name.starts_with('.') {
        return Ok(None);
    }
    match metadata {
        Ok(metadata) if metadata.is_file() => Ok(Some(StoredObject {
            name,
            size_bytes: metadata.len(),
        })),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Copies `from` to a new file `to` (0600) and syncs it; returns the bytes
/// copied.
fn copy_synced(from: &Path, to: &Path, progress: &ProgressBar) -> std::io::Result<u64> {
    let mut output = durable_file::create(to)?;
    let copied = copy(from, &mut output, progress)?;
    output.sync_all()?;
    Ok(copied)
}

/// Puts the finished file `from` (never written again) at `to` without
/// copying it, when it is private (0600, as every snapshot the store
/// keeps) and both are on one file system: a second name, synced, then
/// renamed into place. `None` otherwise (the caller copies).
fn link_synced(from: &Path, to: &Path) -> std::io::Result<Option<u64>> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::metadata(from)?.permissions().mode() & 0o077 != 0 {
        return Ok(None);
    }
    let linked = durable_file::sibling_temp(to, "linking");
    match std::fs::hard_link(from, &linked) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Ok(None),
        Err(e) => return Err(e),
    }
    let placed = (|| {
        let file = std::fs::File::open(&linked)?;
        file.sync_all()?;
        let size = file.metadata()?.len();
        durable_file::rename_synced(&linked, to)?;
        Ok(Some(size))
    })();
    if placed.is_err() {
        let _ = std::fs::remove_file(&linked);
    }
    placed
}

/// Copies `from` into `output`; returns the bytes copied.
fn copy(from: &Path, output: &mut std::fs::File, progress: &ProgressBar) -> std::io::Result<u64> {
    let mut input = std::fs::File::open(from)?;
    progress.set_length(input.metadata()?.len());
    let mut buffer = vec![0u8; COPY_CHUNK_BYTES];
    let mut copied = 0u64;
    loop {
        let n = input.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        output.write_all(&buffer[..n])?;
        copied += n as u64;
        progress.inc(n as u64);
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable_file::permission_bits as mode;

    #[tokio::test]
    async fn a_private_file_on_the_same_file_system_is_linked_not_copied() {
        use std::os::unix::fs::MetadataExt;
        let root = tempfile::tempdir().unwrap();
        let source = root.path().join("source");
        durable_file::create_new(&source)
            .unwrap()
            .write_all(b"delta")
            .unwrap();
        let store = FileStore::new(root.path().join("store"));
        let progress = ProgressBar::hidden();
        assert_eq!(store.put("d-1", &source, &progress).await.unwrap(), 5);
        let stored = root.path().join("store").join("d-1");
        assert_eq!(
            std::fs::metadata(&stored).unwrap().ino(),
            std::fs::metadata(&source).unwrap().ino()
        );
        assert_eq!(mode(&stored), 0o600);
        std::fs::remove_file(&source).unwrap();
        assert_eq!(std::fs::read(&stored).unwrap(), b"delta");
    }

    #[tokio::test]
    async fn snapshots_are_private_and_only_they_are_listed() {
        let root = tempfile::tempdir().unwrap();
        let source = root.path().join("source");
        std::fs::write(&source, b"snapshot").unwrap();
        let dir = root.path().join("store");
        let store = FileStore::new(dir.clone());
        let progress = ProgressBar::hidden();
        assert_eq!(store.put("s-1", &source, &progress).await.unwrap(), 8);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("s-1")), 0o600);
        let listed: Vec<String> = store
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(listed, ["s-1"]);
        let fetched = root.path().join("fetched");
        assert_eq!(store.get("s-1", &fetched, &progress).await.unwrap(), 8);
        assert_eq!(std::fs::read(&fetched).unwrap(), b"snapshot");
        assert_eq!(mode(&fetched), 0o600);
    }

    #[test]
    fn an_entry_gone_before_it_is_looked_at_is_passed_over() {
        let root = tempfile::tempdir().unwrap();
        let gone = std::fs::metadata(root.path().join("renamed-away"));
        assert!(stored_object("s-2".into(), gone).unwrap().is_none());
        let denied = Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert!(stored_object("s-2".into(), denied).is_err());
        let file = root.path().join("s-3");
        std::fs::write(&file, b"abc").unwrap();
        let found = stored_object("s-3".into(), std::fs::metadata(&file)).unwrap();
        assert_eq!(
            found.map(|o| (o.name, o.size_bytes)),
            Some(("s-3".into(), 3))
        );
        let temp = stored_object(".s-3.writing".into(), std::fs::metadata(&file)).unwrap();
        assert!(temp.is_none());
        let dir = stored_object("d".into(), std::fs::metadata(root.path())).unwrap();
        assert!(dir.is_none());
    }
}
