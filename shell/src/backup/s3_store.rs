//! A snapshot store in an S3-compatible bucket: AWS S3 (`s3://`) or
//! DigitalOcean Spaces (`https://<region>.digitaloceanspaces.com/`).
//!
//! Credentials, region and endpoint come from the AWS SDK's standard chain
//! (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL_S3`, profiles,
//! instance roles, ...), overridden by `--aws-*` for S3 and by
//! `--do-spaces-*` for Spaces. Files larger than one part go up as a
//! multipart upload, which appears under its name only once complete.

use std::path::Path;

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use indicatif::ProgressBar;

use super::cloud::StoreScope;
use super::location::Location;
use super::store::{StoreError, StoreSettings, StoredObject};

/// Size of each part of a multipart upload; a file up to this size goes
/// up in one request. S3 allows 10,000 parts, so up to 160 GiB.
const PART_BYTES: u64 = 16 * 1024 * 1024;
/// The signing region Spaces expects whatever the data center.
const SPACES_SIGNING_REGION: &str = "us-east-1";

pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    scope: StoreScope,
}

impl S3Store {
    pub async fn open(location: &Location, settings: &StoreSettings) -> Result<Self, StoreError> {
        let shown = location.to_string();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        let (bucket, prefix, keys, path_style) = match location {
            Location::S3 { bucket, prefix } => {
                if let Some(region) = &settings.aws_region {
                    loader = loader.region(aws_config::Region::new(region.clone()));
                }
                let keys = (
                    settings.aws_access_key.clone(),
                    settings.aws_secret_key.clone(),
                );
                let custom_endpoint = std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
                    || std::env::var_os("AWS_ENDPOINT_URL").is_some();
                (bucket, prefix, keys, custom_endpoint)
            }
            Location::Spaces {
                region,
                bucket,
                prefix,
            } => {
                let endpoint = settings
                    .do_spaces_endpoint
                    .clone()
                    .unwrap_or_else(|| format!("https://{region}.digitaloceanspaces.com"));
                loader = loader
                    .region(aws_config::Region::new(SPACES_SIGNING_REGION))
                    .endpoint_url(endpoint);
                let keys = (
                    settings.do_spaces_key.clone(),
                    settings.do_spaces_secret.clone(),
                );
                (bucket, prefix, keys, true)
            }
            Location::File { .. } | Location::Gcs { .. } | Location::Azure { .. } => {
                unreachable!("not an S3-compatible bucket")
            }
        };
        match keys {
            (Some(key), Some(secret)) => {
                loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                    key, secret, None, None, "e2d-flags",
                ));
            }
            (None, None) => {}
            _ => {
                return Err(StoreError {
                    store: shown,
                    action: "open".into(),
                    reason: "give both the access key and the secret key, or neither (to use the standard credential chain)".into(),
                })
            }
        }
        let config = loader.load().await;
        if config.region().is_none() {
            return Err(StoreError {
                store: shown,
                action: "open".into(),
                reason: "no AWS region: set --aws-region or AWS_REGION".into(),
            });
        }
        let s3_config = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(path_style)
            .build();
        Ok(Self {
            client: aws_sdk_s3::Client::from_conf(s3_config),
            bucket: bucket.clone(),
            scope: StoreScope {
                prefix: prefix.clone(),
                shown,
            },
        })
    }

    pub async fn put(
        &self,
        name: &str,
        path: &Path,
        progress: &ProgressBar,
    ) -> Result<u64, StoreError> {
        let action = || format!("uploading {name}");
        let size = self.scope.upload_size(name, path, progress).await?;
        let key = self.scope.key(name);
        if size <= PART_BYTES {
            let body = ByteStream::from_path(path)
                .await
                .map_err(|e| self.scope.error(action(), e))?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .body(body)
                .send()
                .await
                .map_err(|e| self.scope.error(action(), DisplayErrorContext(e)))?;
            progress.inc(size);
            return Ok(size);
        }
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| self.scope.error(action(), DisplayErrorContext(e)))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| self.scope.error(action(), "the store gave no upload id"))?
            .to_string();
        let uploaded = self
            .upload_parts(&key, &upload_id, path, size, progress)
            .await;
        if uploaded.is_err() {
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        uploaded.map_err(|reason| self.scope.error(action(), reason))?;
        Ok(size)
    }

    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        path: &Path,
        size: u64,
        progress: &ProgressBar,
    ) -> Result<(), String> {
        let mut parts = Vec::new();
        let mut offset = 0u64;
        let mut number = 1i32;
        while offset < size {
            let length = PART_BYTES.min(size - offset);
            let body = ByteStream::read_from()
                .path(path)
                .offset(offset)
                .length(Length::Exact(length))
                .build()
                .await
                .map_err(|e| e.to_string())?;
            let part = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .body(body)
                .send()
                .await
                .map_err(|e| format!("part {number}: {}", DisplayErrorContext(e)))?;
            parts.push(
                CompletedPart::builder()
                    .set_e_tag(part.e_tag().map(str::to_string))
                    .part_number(number)
                    .build(),
            );
            progress.inc(length);
            offset += length;
            number += 1;
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| DisplayErrorContext(e).to_string())?;
        Ok(())
    }

    pub async fn list(&self) -> Result<Vec<StoredObject>, StoreError> {
        let prefix = self.scope.listing_prefix();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&prefix)
            .into_paginator()
            .send();
        let mut objects = Vec::new();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| self.scope.error("listing".into(), DisplayErrorContext(e)))?;
            for object in page.contents() {
                let Some(name) = object.key().and_then(|key| key.strip_prefix(&prefix)) else {
                    continue;
                };
                if !name.is_empty() && !name.contains('/') {
                    objects.push(StoredObject {
                        name: name.to_string(),
                        size_bytes: object.size().unwrap_or(0).max(0) as u64,
                    });
                }
            }
        }
        Ok(objects)
    }

    pub async fn get(
        &self,
        name: &str,
        to: &Path,
        progress: &ProgressBar,
    ) -> Result<u64, StoreError> {
        let action = || format!("downloading {name}");
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.scope.key(name))
            .send()
            .await
            .map_err(|e| self.scope.error(action(), DisplayErrorContext(e)))?;
        if let Some(length) = object.content_length() {
            progress.set_length(length.max(0) as u64);
        }
        let mut body = object.body;
        self.scope
            .download(name, to, progress, async || {
                body.try_next().await.map_err(|e| e.to_string())
            })
            .await
    }

    pub async fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.scope.key(name))
            .send()
            .await
            .map_err(|e| {
                self.scope
                    .error(format!("deleting {name}"), DisplayErrorContext(e))
            })?;
        Ok(())
    }
}
