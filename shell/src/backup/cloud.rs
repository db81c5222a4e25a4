//! What the cloud stores share: where a snapshot's object lives under the
//! store's prefix, how their errors read, and a download written to a
//! file as it arrives.

use std::path::Path;

use indicatif::ProgressBar;
use tokio::io::AsyncWriteExt;

use super::store::StoreError;

/// A cloud store's objects: those under `prefix` (no leading or trailing
/// `/`), shown to the user as `shown` (the store's URL).
pub struct StoreScope {
    pub prefix: String,
    pub shown: String,
}

impl StoreScope {
    /// The object key of snapshot `name`.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// What a listing asks for: everything under the prefix.
    pub fn listing_prefix(&self) -> String {
        if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        }
    }

    pub fn error(&self, action: String, reason: impl std::fmt::Display) -> StoreError {
        StoreError {
            store: self.shown.clone(),
            action,
            reason: reason.to_string(),
        }
    }

    /// The size of the file at `path` about to go up as `name`, set as
    /// the progress bar's length.
    pub async fn upload_size(
        &self,
        name: &str,
        path: &Path,
        progress: &ProgressBar,
    ) -> Result<u64, StoreError> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| self.error(format!("uploading {name}"), e))?
            .len();
        progress.set_length(size);
        Ok(size)
    }

    /// Downloads `name` into the file `to` (created or truncated) chunk
    /// by chunk as `next_chunk` gives them, counted on `progress`, then
    /// syncs it; returns the bytes received.
    pub async fn download<B: AsRef<[u8]>>(
        &self,
        name: &str,
        to: &Path,
        progress: &ProgressBar,
        mut next_chunk: impl AsyncFnMut() -> Result<Option<B>, String>,
    ) -> Result<u64, StoreError> {
        let action = || format!("downloading {name}");
        let file = crate::durable_file::create(to).map_err(|e| self.error(action(), e))?;
        let mut file = tokio::fs::File::from_std(file);
        let mut received = 0u64;
        while let Some(chunk) = next_chunk().await.map_err(|e| self.error(action(), e))? {
            let bytes = chunk.as_ref();
            file.write_all(bytes)
                .await
                .map_err(|e| self.error(action(), e))?;
            received += bytes.len() as u64;
            progress.inc(bytes.len() as u64);
        }
        file.sync_all().await.map_err(|e| self.error(action(), e))?;
        Ok(received)
    }
}
