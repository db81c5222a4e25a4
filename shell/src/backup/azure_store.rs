//! A snapshot store in an Azure Blob Storage container
//! (`azblob://<account>/<container>[/prefix]`), through `object_store`:
//! blobs are written whole (in blocks, committed at the end, for larger
//! files), so a reader never sees half a snapshot under its name.
//!
//! Credentials are Azure's usual sources, read from the environment by
//! `object_store`: an account key (`AZURE_STORAGE_ACCOUNT_KEY`), a SAS
//! token (`AZURE_STORAGE_SAS_KEY`), a service principal
//! (`AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`, `AZURE_TENANT_ID`), workload
//! identity (`AZURE_FEDERATED_TOKEN_FILE`), then the VM's managed
//! identity. `AZURE_STORAGE_USE_EMULATOR=true` talks to Azurite.

use std::path::Path;
use std::sync::Arc;

use futures_util::StreamExt;
use indicatif::ProgressBar;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt;

use super::cloud::StoreScope;
use super::store::{StoreError, StoredObject};

/// Files up to this size go up in one request; larger ones in blocks of
/// this size.
const PART_BYTES: usize = 16 * 1024 * 1024;
/// Blocks uploading at once.
const PARTS_IN_FLIGHT_MAX: usize = 4;

pub struct AzureStore {
    store: Arc<dyn ObjectStore>,
    scope: StoreScope,
}

impl AzureStore {
    pub fn open(
        account: &str,
        container: &str,
        prefix: &str,
        shown: String,
    ) -> Result<Self, StoreError> {
        let store = MicrosoftAzureBuilder::from_env()
            .with_account(account)
            .with_container_name(container)
            .build()
            .map_err(|e| StoreError {
                store: shown.clone(),
                action: "open".into(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            store: Arc::new(store),
            scope: StoreScope {
                prefix: prefix.to_string(),
                shown,
            },
        })
    }

    fn path(&self, name: &str) -> ObjectPath {
        ObjectPath::from(self.scope.key(name))
    }

    pub async fn put(
        &self,
        name: &str,
        path: &Path,
        progress: &ProgressBar,
    ) -> Result<u64, StoreError> {
        let action = || format!("uploading {name}");
        let size = self.scope.upload_size(name, path, progress).await?;
        let location = self.path(name);
        if size <= PART_BYTES as u64 {
            let body = tokio::fs::read(path)
                .await
                .map_err(|e| self.scope.error(action(), e))?;
            self.store
                .put(&location, PutPayload::from(body))
                .await
                .map_err(|e| self.scope.error(action(), e))?;
            progress.inc(size);
            return Ok(size);
        }
        let upload = self
            .store
            .put_multipart(&location)
            .await
            .map_err(|e| self.scope.error(action(), e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| self.scope.error(action(), e))?;
        let mut buffer = vec![0u8; PART_BYTES];
        loop {
            let read = file
                .read(&mut buffer)
                .await
                .map_err(|e| self.scope.error(action(), e))?;
            if read == 0 {
                break;
            }
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT_MAX).await {
                let _ = writer.abort().await;
                return Err(self.scope.error(action(), e));
            }
            writer.write(&buffer[..read]);
            progress.inc(read as u64);
        }
        writer
            .finish()
            .await
            .map_err(|e| self.scope.error(action(), e))?;
        Ok(size)
    }

    pub async fn list(&self) -> Result<Vec<StoredObject>, StoreError> {
        let prefix =
            (!self.scope.prefix.is_empty()).then(|| ObjectPath::from(self.scope.prefix.as_str()));
        let listing = self
            .store
            .list_with_delimiter(prefix.as_ref())
            .await
            .map_err(|e| self.scope.error("listing".into(), e))?;
        Ok(listing
            .objects
            .into_iter()
            .filter_map(|object| {
                let name = object.location.filename()?.to_string();
                Some(StoredObject {
                    name,
                    size_bytes: object.size,
                })
            })
            .collect())
    }

    pub async fn get(
        &self,
        name: &str,
        to: &Path,
        progress: &ProgressBar,
    ) -> Result<u64, StoreError> {
        let action = || format!("downloading {name}");
        let got = self
            .store
            .get(&self.path(name))
            .await
            .map_err(|e| self.scope.error(action(), e))?;
        progress.set_length(got.meta.size);
        let mut stream = got.into_stream();
        self.scope
            .download(name, to, progress, async || {
                stream.next().await.transpose().map_err(|e| e.to_string())
            })
            .await
    }

    pub async fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.store
            .delete(&self.path(name))
            .await
            .map_err(|e| self.scope.error(format!("deleting {name}"), e))
    }
}
