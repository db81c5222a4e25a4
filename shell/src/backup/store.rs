//! The snapshot stores: a directory, an S3-compatible bucket (AWS S3,
//! DigitalOcean Spaces), a Google Cloud Storage bucket or an Azure Blob
//! Storage container. Uploads are atomic: a reader never sees half a
//! snapshot under a snapshot's name.

use std::path::Path;

use indicatif::ProgressBar;

#[cfg(not(madsim))]
use super::azure_store::AzureStore;
use super::file_store::FileStore;
#[cfg(not(madsim))]
use super::gcs_store::GcsStore;
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
    #[cfg(not(madsim))]
    Gcs(GcsStore),
    #[cfg(not(madsim))]
    Azure(AzureStore),
}

/// Calls `$call` on whichever store `$store` is.
macro_rules! each_store {
    ($store:expr, $inner:ident => $call:expr) => {
        match $store {
            Store::File($inner) => $call,
            #[cfg(not(madsim))]
            Store::S3($inner) => $call,
            #[cfg(not(madsim))]
            Store::Gcs($inner) => $call,
            #[cfg(not(madsim))]
            Store::Azure($inner) => $call,
        }
    };
}

impl Store {
    pub async fn open(location: &Location, settings: &StoreSettings) -> Result<Self, StoreError> {
        match location {
            Location::File { dir } => Ok(Store::File(FileStore::new(dir.clone()))),
            #[cfg(not(madsim))]
            Location::S3 { .. } | Location::Spaces { .. } => {
                Ok(Store::S3(S3Store::open(location, settings).await?))
            }
            #[cfg(not(madsim))]
            Location::Gcs { bucket, prefix } => Ok(Store::Gcs(GcsStore::open(
                bucket,
                prefix,
                location.to_string(),
            )?)),
            #[cfg(not(madsim))]
            Location::Azure {
                account,
                container,
                prefix,
            } => Ok(Store::Azure(AzureStore::open(
                account,
                container,
                prefix,
                location.to_string(),
            )?)),
            #[cfg(madsim)]
            Location::S3 { .. }
            | Location::Spaces { .. }
            | Location::Gcs { .. }
            | Location::Azure { .. } => {
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
        each_store!(self, store => store.put(name, path, progress).await)
    }

    /// Every object directly under the store's prefix, sorted by name.
    pub async fn list(&self) -> Result<Vec<StoredObject>, StoreError> {
        let mut objects = each_store!(self, store => store.list().await)?;
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
        each_store!(self, store => store.get(name, to, progress).await)
    }

    pub async fn delete(&self, name: &str) -> Result<(), StoreError> {
        each_store!(self, store => store.delete(name).await)
    }
}
