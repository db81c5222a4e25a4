//! A snapshot store in a directory (`file://<dir>`): each snapshot a file,
//! written beside its final name and renamed into place once synced.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;

use super::store::{sibling_temp, StoreError, StoredObject};

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
            std::fs::create_dir_all(&dir)?;
            let target = dir.join(&name);
            let temp = sibling_temp(&target, "upload");
            let copied = copy_synced(&from, &temp, &progress).and_then(|size| {
                std::fs::rename(&temp, &target)?;
                sync_dir(&dir)?;
                Ok(size)
            });
            if copied.is_err() {
                let _ = std::fs::remove_file(&temp);
            }
            copied
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
                let metadata = entry.metadata()?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if metadata.is_file() && !name.starts_with('.') {
                    objects.push(StoredObject {
                        name,
                        size_bytes: metadata.len(),
                    });
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

/// Copies `from` to a new file `to` and syncs it; returns the bytes copied.
pub fn copy_synced(from: &Path, to: &Path, progress: &ProgressBar) -> std::io::Result<u64> {
    let mut input = std::fs::File::open(from)?;
    progress.set_length(input.metadata()?.len());
    let mut output = std::fs::File::create(to)?;
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
    output.sync_all()?;
    Ok(copied)
}

/// Makes a rename in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
