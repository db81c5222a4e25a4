//! Calling a member's or an etcd server's client port as a client does:
//! over TLS when the URL is https (`--cacert`, and `--cert`/`--key` when
//! the server asks for a certificate), authenticated when `--user` is
//! given, and streaming its `Maintenance.Snapshot` into a file.

use std::io::Write;
use std::path::Path;

use e2d_proto::etcdserverpb::auth_client::AuthClient;
use e2d_proto::etcdserverpb::kv_client::KvClient;
use e2d_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use e2d_proto::etcdserverpb::{AuthenticateRequest, PutRequest, RangeRequest, SnapshotRequest};
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::cli::RemoteArgs;
use crate::durable_file;
use crate::grpc::maintenance::SNAPSHOT_FORMAT_METADATA;

/// An open client connection, with the token to send when auth is on.
pub struct Remote {
    pub url: String,
    channel: Channel,
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
}

/// `endpoint` as a URL: plain `host:port` means http.
pub fn endpoint_url(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

fn user_and_password(user: &str) -> Result<(String, String), String> {
    match user.split_once(':') {
        Some((name, password)) => Ok((name.to_string(), password.to_string())),
        None => Err(format!(
            "--user {user:?} has no password: pass --user {user}:<password>"
        )),
    }
}

impl Remote {
    /// Connects to `endpoint` and, with `--user`, authenticates.
    pub async fn connect(endpoint: &str, args: &RemoteArgs) -> Result<Remote, String> {
        let url = endpoint_url(endpoint);
        let mut builder =
            Endpoint::from_shared(url.clone()).map_err(|e| format!("bad endpoint {url}: {e}"))?;
        if url.starts_with("https://") {
            let cacert = args.cacert.as_ref().ok_or_else(|| {
                format!("{url} is https: pass --cacert, the CA that signed its certificate")
            })?;
            let mut tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read_pem(cacert, "--cacert")?));
            if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
                tls = tls.identity(Identity::from_pem(
                    read_pem(cert, "--cert")?,
                    read_pem(key, "--key")?,
                ));
            }
            builder = builder
                .tls_config(tls)
                .map_err(|e| format!("TLS settings for {url}: {e}"))?;
        } else if args.cacert.is_some() || args.cert.is_some() {
            return Err(format!(
                "{url} is not https, but --cacert or --cert was given: use an https:// endpoint"
            ));
        }
        let channel = builder
            .connect_timeout(std::time::Duration::from_secs(10))
            .connect()
            .await
            .map_err(|e| format!("cannot reach {url}: {e}"))?;
        let mut remote = Remote {
            url,
            channel,
            token: None,
        };
        if let Some(user) = &args.user {
            let (name, password) = user_and_password(user)?;
            let answer = AuthClient::new(remote.channel.clone())
                .authenticate(AuthenticateRequest { name, password })
                .await
                .map_err(|e| format!("{}: {}", remote.url, e.message()))?;
            let token = answer.into_inner().token;
            remote.token = Some(
                token
                    .parse()
                    .map_err(|_| format!("{}: the token is not valid metadata", remote.url))?,
            );
        }
        Ok(remote)
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            request.metadata_mut().insert("token", token.clone());
        }
        request
    }

    /// The value under `key`, if there is one.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let request = self.request(RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        });
        let answer = KvClient::new(self.channel.clone())
            .range(request)
            .await
            .map_err(|e| format!("{}: {}", self.url, e.message()))?;
        Ok(answer
            .into_inner()
            .kvs
            .into_iter()
            .next()
            .map(|kv| kv.value.to_vec()))
    }

    /// Puts `value` under `key`.
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        let request = self.request(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            ..Default::default()
        });
        KvClient::new(self.channel.clone())
            .put(request)
            .await
            .map(|_| ())
            .map_err(|e| format!("{}: {}", self.url, e.message()))
    }

    /// Streams the server's snapshot into a new file at `path`, in e2d's
    /// own format when `e2d_format` (a member of e2d answers so; etcd
    /// always sends its database). Returns the cluster id and revision the
    /// first message's header carried (zero from etcd, which sends none).
    pub async fn download_snapshot(
        &self,
        path: &Path,
        e2d_format: bool,
        progress: &indicatif::ProgressBar,
    ) -> Result<(u64, i64), String> {
        let url = &self.url;
        let mut request = self.request(SnapshotRequest {});
        if e2d_format {
            request
                .metadata_mut()
                .insert(SNAPSHOT_FORMAT_METADATA, MetadataValue::from_static("e2d"));
        }
        let mut stream = MaintenanceClient::new(self.channel.clone())
            .max_decoding_message_size(usize::MAX)
            .snapshot(request)
            .await
            .map_err(|e| format!("{url}: snapshot refused: {}", e.message()))?
            .into_inner();
        let mut file =
            durable_file::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut ids = None;
        while let Some(message) = stream
            .message()
            .await
            .map_err(|e| format!("{url}: snapshot stream broke: {}", e.message()))?
        {
            if ids.is_none() {
                let header = message.header.unwrap_or_default();
                ids = Some((header.cluster_id, header.revision));
            }
            file.write_all(&message.blob)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            progress.inc(message.blob.len() as u64);
        }
        file.sync_all()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        ids.ok_or_else(|| format!("{url}: the snapshot stream was empty"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_needs_a_password() {
        assert_eq!(
            user_and_password("root:pw:with:colons").unwrap(),
            ("root".to_string(), "pw:with:colons".to_string())
        );
        let refused = user_and_password("root").unwrap_err();
        assert!(refused.contains("--user root:<password>"), "{refused}");
        assert_eq!(endpoint_url("10.0.0.1:2379"), "http://10.0.0.1:2379");
        assert_eq!(endpoint_url("https://a:2379"), "https://a:2379");
    }
}
