//! A snapshot store in a Google Cloud Storage bucket (`gs://`), over the
//! JSON API: uploads (one request, or a resumable upload in parts for
//! larger files) appear under their name only once complete.
//!
//! Credentials follow Google's Application Default Credentials:
//! `STORAGE_EMULATOR_HOST` (an emulator: no credentials, as Google's own
//! client libraries do), then the key file `GOOGLE_APPLICATION_CREDENTIALS`
//! names or `gcloud auth application-default login` wrote (a service
//! account's key, or a user's refresh token), then the metadata server of
//! the VM the node runs on.

use std::path::Path;
use std::sync::Mutex;

use indicatif::ProgressBar;
use serde::Deserialize;
use tokio::io::AsyncReadExt;

use super::cloud::StoreScope;
use super::store::{StoreError, StoredObject};

const GOOGLE_STORAGE_URL: &str = "https://storage.googleapis.com";
const METADATA_TOKEN_URL: &str =
    "http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token";
const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";
/// Files up to this size go up in one request; larger ones in parts of
/// this size (a multiple of 256 KiB, as resumable uploads require).
const PART_BYTES: u64 = 16 * 1024 * 1024;
/// A token is fetched again this long before it expires.
const TOKEN_MARGIN_S: u64 = 60;
/// Objects asked for per listing page.
const LIST_PAGE_MAX: &str = "1000";

/// Where a token comes from.
enum TokenSource {
    /// An emulator: no credentials.
    None,
    ServiceAccount {
        email: String,
        key_id: String,
        key: Box<jsonwebtoken::EncodingKey>,
        token_uri: String,
    },
    AuthorizedUser {
        client_id: String,
        client_secret: String,
        refresh_token: String,
    },
    Metadata,
}

/// A key file, as Google's tools write it.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    client_email: Option<String>,
    private_key_id: Option<String>,
    private_key: Option<String>,
    token_uri: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

#[derive(Deserialize)]
struct ListPage {
    #[serde(default)]
    items: Vec<ListedObject>,
    #[serde(rename = "nextPageToken")]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct ListedObject {
    name: String,
    /// A decimal string, as the JSON API gives 64-bit numbers.
    size: Option<String>,
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

pub struct GcsStore {
    http: reqwest::Client,
    base_url: String,
    bucket: String,
    scope: StoreScope,
    source: TokenSource,
    /// The current token and when it expires (Unix seconds).
    token: Mutex<Option<(String, u64)>>,
}

fn unix_now_s() -> u64 {
    super::wall_clock_ms() / 1000
}

/// `text` with every byte but unreserved ones percent-encoded, for a path
/// segment or a query value.
fn encoded(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl GcsStore {
    pub fn open(bucket: &str, prefix: &str, shown: String) -> Result<Self, StoreError> {
        let failed = |reason: String| StoreError {
            store: shown.clone(),
            action: "open".into(),
            reason,
        };
        let http = crate::discovery::http::client_builder()
            .and_then(|b| b.build().map_err(|e| e.to_string()))
            .map_err(failed)?;
        let (base_url, source) = match std::env::var("STORAGE_EMULATOR_HOST") {
            Ok(host) if !host.is_empty() => {
                let host = host.trim_end_matches('/');
                let url = if host.contains("://") {
                    host.to_string()
                } else {
                    format!("http://{host}")
                };
                (url, TokenSource::None)
            }
            _ => (
                GOOGLE_STORAGE_URL.to_string(),
                token_source().map_err(failed)?,
            ),
        };
        Ok(Self {
            http,
            base_url,
            bucket: bucket.to_string(),
            scope: StoreScope {
                prefix: prefix.to_string(),
                shown,
            },
            source,
            token: Mutex::new(None),
        })
    }

    /// A bearer token for the next request; `None` for an emulator.
    async fn token(&self) -> Result<Option<String>, String> {
        if matches!(self.source, TokenSource::None) {
            return Ok(None);
        }
        if let Some((token, expires_s)) = crate::fail_stop::lock(&self.token).clone() {
            if unix_now_s() + TOKEN_MARGIN_S < expires_s {
                return Ok(Some(token));
            }
        }
        let now_s = unix_now_s();
        let request = match &self.source {
            TokenSource::None => unreachable!("handled above"),
            TokenSource::ServiceAccount {
                email,
                key_id,
                key,
                token_uri,
            } => {
                let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
                header.kid = Some(key_id.clone());
                let claims = Claims {
                    iss: email,
                    scope: SCOPE,
                    aud: token_uri,
                    iat: now_s,
                    exp: now_s + 3600,
                };
                let assertion = jsonwebtoken::encode(&header, &claims, key)
                    .map_err(|e| format!("signing the token request: {e}"))?;
                self.http.post(token_uri).form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", &assertion),
                ])
            }
            TokenSource::AuthorizedUser {
                client_id,
                client_secret,
                refresh_token,
            } => self.http.post(DEFAULT_TOKEN_URL).form(&[
                ("grant_type", "refresh_token"),
                ("client_id", client_id),
                ("client_secret", client_secret),
                ("refresh_token", refresh_token),
            ]),
            TokenSource::Metadata => self
                .http
                .get(METADATA_TOKEN_URL)
                .header("Metadata-Flavor", "Google"),
        };
        let answer: TokenAnswer = request
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("getting an access token: {e}"))?
            .json()
            .await
            .map_err(|e| format!("reading the access token: {e}"))?;
        let expires_s = now_s + answer.expires_in;
        *crate::fail_stop::lock(&self.token) = Some((answer.access_token.clone(), expires_s));
        Ok(Some(answer.access_token))
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, String> {
        let request = match self.token().await? {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(format!(
            "{status}: {}",
            body.chars().take(300).collect::<String>()
        ))
    }

    fn object_url(&self, name: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.base_url,
            encoded(&self.bucket),
            encoded(&self.scope.key(name))
        )
    }

    pub async fn put(
        &self,
        name: &str,
        path: &Path,
        progress: &ProgressBar,
    ) -> Result<u64, StoreError> {
        let action = || format!("uploading {name}");
        let size = self.scope.upload_size(name, path, progress).await?;
        let upload_url = format!(
            "{}/upload/storage/v1/b/{}/o",
            self.base_url,
            encoded(&self.bucket)
        );
        let key = self.scope.key(name);
        if size <= PART_BYTES {
            let body = tokio::fs::read(path)
                .await
                .map_err(|e| self.scope.error(action(), e))?;
            let request = self
                .http
                .post(&upload_url)
                .query(&[("uploadType", "media"), ("name", key.as_str())])
                .header("Content-Type", "application/octet-stream")
                .body(body);
            self.send(request)
                .await
                .map_err(|e| self.scope.error(action(), e))?;
            progress.inc(size);
            return Ok(size);
        }
        let started = self
            .send(
                self.http
                    .post(&upload_url)
                    .query(&[("uploadType", "resumable"), ("name", key.as_str())])
                    .header("Content-Type", "application/json")
                    .header("X-Upload-Content-Length", size.to_string())
                    .body("{}"),
            )
            .await
            .map_err(|e| self.scope.error(action(), e))?;
        let session = started
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| {
                self.scope
                    .error(action(), "the store gave no upload session")
            })?;
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| self.scope.error(action(), e))?;
        let mut offset = 0u64;
        while offset < size {
            let length = PART_BYTES.min(size - offset);
            let mut part = vec![0u8; length as usize];
            file.read_exact(&mut part)
                .await
                .map_err(|e| self.scope.error(action(), e))?;
            let range = format!("bytes {offset}-{}/{size}", offset + length - 1);
            let request = self
                .http
                .put(&session)
                .header("Content-Range", range)
                .body(part);
            let request = match self
                .token()
                .await
                .map_err(|e| self.scope.error(action(), e))?
            {
                Some(token) => request.bearer_auth(token),
                None => request,
            };
            let answer = request
                .send()
                .await
                .map_err(|e| self.scope.error(action(), e))?;
            // 308: part taken, more expected; 200/201: the object is there.
            let status = answer.status().as_u16();
            let last = offset + length == size;
            if !(status == 308 && !last || (200..300).contains(&status) && last) {
                let _ = self.http.delete(&session).send().await;
                return Err(self
                    .scope
                    .error(action(), format!("part at byte {offset} answered {status}")));
            }
            progress.inc(length);
            offset += length;
        }
        Ok(size)
    }

    pub async fn list(&self) -> Result<Vec<StoredObject>, StoreError> {
        let prefix = self.scope.listing_prefix();
        let url = format!("{}/storage/v1/b/{}/o", self.base_url, encoded(&self.bucket));
        let mut objects = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut query = vec![
                ("prefix", prefix.clone()),
                ("delimiter", "/".to_string()),
                ("maxResults", LIST_PAGE_MAX.to_string()),
            ];
            if let Some(token) = &page_token {
                query.push(("pageToken", token.clone()));
            }
            let page: ListPage = self
                .send(self.http.get(&url).query(&query))
                .await
                .map_err(|e| self.scope.error("listing".into(), e))?
                .json()
                .await
                .map_err(|e| self.scope.error("listing".into(), e))?;
            for object in page.items {
                let Some(name) = object.name.strip_prefix(&prefix) else {
                    continue;
                };
                if !name.is_empty() && !name.contains('/') {
                    objects.push(StoredObject {
                        name: name.to_string(),
                        size_bytes: object.size.and_then(|s| s.parse().ok()).unwrap_or(0),
                    });
                }
            }
            match page.next_page_token {
                Some(token) if !token.is_empty() => page_token = Some(token),
                _ => return Ok(objects),
            }
        }
    }

    pub async fn get(
        &self,
        name: &str,
        to: &Path,
        progress: &ProgressBar,
    ) -> Result<u64, StoreError> {
        let action = || format!("downloading {name}");
        let mut response = self
            .send(
                self.http
                    .get(self.object_url(name))
                    .query(&[("alt", "media")]),
            )
            .await
            .map_err(|e| self.scope.error(action(), e))?;
        if let Some(length) = response.content_length() {
            progress.set_length(length);
        }
        self.scope
            .download(name, to, progress, async || {
                response.chunk().await.map_err(|e| e.to_string())
            })
            .await
    }

    pub async fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.send(self.http.delete(self.object_url(name)))
            .await
            .map_err(|e| self.scope.error(format!("deleting {name}"), e))?;
        Ok(())
    }
}

/// Application Default Credentials, without an emulator: a key file, or
/// the metadata server.
fn token_source() -> Result<TokenSource, String> {
    let named = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").map(std::path::PathBuf::from);
    let well_known = std::env::var_os("HOME")
        .map(|home| Path::new(&home).join(".config/gcloud/application_default_credentials.json"));
    let path = match (named, well_known) {
        (Some(path), _) => Some(path),
        (None, Some(path)) if path.exists() => Some(path),
        _ => None,
    };
    let Some(path) = path else {
        return Ok(TokenSource::Metadata);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("reading the Google credentials {}: {e}", path.display()))?;
    key_file_source(&text).map_err(|e| format!("the Google credentials {}: {e}", path.display()))
}

fn key_file_source(text: &str) -> Result<TokenSource, String> {
    let file: KeyFile = serde_json::from_str(text).map_err(|e| format!("not a key file: {e}"))?;
    let missing = |field: &str| format!("a {} key file without {field}", file.kind);
    match file.kind.as_str() {
        "service_account" => {
            let pem = file.private_key.as_deref().ok_or_else(|| missing("private_key"))?;
            let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes())
                .map_err(|e| format!("its private key does not parse: {e}"))?;
            Ok(TokenSource::ServiceAccount {
                email: file.client_email.clone().ok_or_else(|| missing("client_email"))?,
                key_id: file.private_key_id.clone().unwrap_or_default(),
                key: Box::new(key),
                token_uri: file
                    .token_uri
                    .clone()
                    .unwrap_or_else(|| DEFAULT_TOKEN_URL.to_string()),
            })
        }
        "authorized_user" => Ok(TokenSource::AuthorizedUser {
            client_id: file.client_id.clone().ok_or_else(|| missing("client_id"))?,
            client_secret: file.client_secret.clone().ok_or_else(|| missing("client_secret"))?,
            refresh_token: file.refresh_token.clone().ok_or_else(|| missing("refresh_token"))?,
        }),
        other => Err(format!(
            "credentials of type {other:?} are not supported: use a service account key or `gcloud auth application-default login`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_percent_encoded() {
        assert_eq!(encoded("e2d/x y+z.snap"), "e2d%2Fx%20y%2Bz.snap");
    }

    #[test]
    fn key_files_say_what_is_missing() {
        let error = |text: &str| key_file_source(text).err().unwrap();
        assert!(error(r#"{"type":"service_account"}"#).contains("without private_key"));
        assert!(error(r#"{"type":"authorized_user","client_id":"a"}"#).contains("client_secret"));
        assert!(error(r#"{"type":"external_account"}"#).contains("not supported"));
        assert!(error("[]").contains("not a key file"));
        assert!(matches!(
            key_file_source(
                r#"{"type":"authorized_user","client_id":"a","client_secret":"b","refresh_token":"c"}"#
            ),
            Ok(TokenSource::AuthorizedUser { .. })
        ));
    }
}
