//! The snapshot stores: a directory, or an S3-compatible bucket (AWS S3,
//! DigitalOcean Spaces). Uploads are atomic: a reader never sees half a
//! snapshot under a snapshot's name.

use std::path::Path;

use indicatif::ProgressBar;

use super::file_store::FileStore;
use super::location::Location;
#[cfg(not(madsim))]
use super::s3_store::S3Store;

/// Credentials and endpoints for the cloud stores, from the flags.
#[derive(Debug, Clone, Default)]
pub struct StoreSettings {
    pub aws_access_key: Option<String>,
    pub aws_secret_key: Option<String>,
    pub aws_region: Option<String>,
    pub do_spaces_key: Option<String>,
    pub do_spaces_secret: Option<String>,
    /// Overrides `https://<region>.digitaloceanspaces.com`.
    pub do_spaces_endpoint: Option<String>,
}

/// One object of a store's listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub name: String,
    pub size_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("{store}: {action}: {reason}")]
pub struct StoreError {
    pub store: String,
    pub action: String,
    pub reason: String,
}

pub enum Store {
    File(FileStore),
    #[cfg(not(madsim))]
    S3(S3Store),
}

impl Store {
    pub async fn open(location: &Location, settings: &StoreSettings) -> Result<Self, StoreError> {
        match location {
            Location::File { dir } => Ok(Store::File(FileStore::new(dir.clone()))),
            #[cfg(not(madsim))]
            Location::S3 { .. } | Location::Spaces { .. } => {
                Ok(Store::S3(S3Store::open(location, settings).await?))
            }
            #[cfg(madsim)]
            Location::S3 { .. } | Location::Spaces { .. } => {
                let _ = settings;
                Err(StoreError {
                    store: location.to_string(),
                    action: "open".into(),
                    reason: "cloud stores are not simulated".into(),
                })
            }
        }
    }

    /// Uploads the file at `path` as `name`; returns its size.
    pub async fn put(
        &self,
        name: &str,
        path: &Path,
        progress: &ProgressBar,
    ) -> Result<u64, StoreError> {
        match self {
            Store::File(store) => store.put(name, path, progress).await,
            #[cfg(not(madsim))]
            Store::S3(store) => store.put(name, path, progress).await,
        }
    }

    /// Every object directly under the store's prefix, sorted by name.
    pub async fn list(&self) -> Result<Vec<StoredObject>, StoreError> {
        let mut objects = match self {
            Store::File(store) => store.list().await,
            #[cfg(not(madsim))]
            Store::S3(store) => store.list().await,
        }?;
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(objects)
    }

    /// Downloads `name` into the file at `to` (created or truncated).
    pub async fn get(
        &self,
        name: &str,
        to: &Path,
        progress: &ProgressBar,
    ) -> Result<u64, StoreError> {
        match self {
            Store::File(store) => store.get(name, to, progress).await,
            #[cfg(not(madsim))]
            Store::S3(store) => store.get(name, to, progress).await,
        }
    }

    pub async fn delete(&self, name: &str) -> Result<(), StoreError> {
        match self {
            Store::File(store) => store.delete(name).await,
            #[cfg(not(madsim))]
            Store::S3(store) => store.delete(name).await,
        }
    }
}
