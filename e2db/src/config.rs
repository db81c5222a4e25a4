//! Client configuration: where etcd is, how to reach it (TLS, timeouts),
//! where the tables live (the namespace), and the key for `encrypted`
//! fields. Built in code or read from `E2DB_*` environment variables.

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};

use crate::error::{Error, Result};
use crate::keys::check_namespace;
use crate::seal::EncryptionKey;

/// The endpoint used when none is given (`http://`, or `https://` with
/// TLS).
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:2379";
/// The namespace used when none is given.
pub const DEFAULT_NAMESPACE: &str = "e2db";
/// Attempts of one transaction before it fails with `Error::Conflict`.
pub const DEFAULT_RETRIES_MAX: u32 = 16;
/// The most attempts a configuration may ask for.
pub const RETRIES_MAX_LIMIT: u32 = 1000;

/// How to reach etcd and where the tables live.
#[derive(Debug, Clone)]
pub struct Config {
    /// `http://host:port` or `https://host:port` (a bare `host:port` takes
    /// the scheme that the TLS setting implies).
    pub endpoints: Vec<String>,
    /// The prefix of every key e2db writes (see the key layout).
    pub namespace: String,
    pub tls: Option<TlsFiles>,
    /// How long to wait for a connection.
    pub connect_timeout: Duration,
    /// How long one request may take (a watch stream is not bounded).
    pub request_timeout: Duration,
    /// Seals `encrypted` fields; tables with such fields need it.
    pub encryption_key: Option<EncryptionKey>,
    /// Attempts of one transaction before `Error::Conflict`.
    pub retries_max: u32,
}

/// PEM files for a TLS connection: the CA that signed the server's
/// certificate, and optionally the client's own certificate and key (both
/// or neither) for servers that demand one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_cert: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The name to check the server's certificate against, when it is not
    /// the endpoint's host.
    pub domain: Option<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            endpoints: vec![DEFAULT_ENDPOINT.to_string()],
            namespace: DEFAULT_NAMESPACE.to_string(),
            tls: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            encryption_key: None,
            retries_max: DEFAULT_RETRIES_MAX,
        }
    }
}

impl Config {
    /// Defaults with these endpoints.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Config {
        Config {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ..Config::default()
        }
    }

    pub fn namespace(mut self, namespace: impl Into<String>) -> Config {
        self.namespace = namespace.into();
        self
    }

    pub fn tls(mut self, tls: TlsFiles) -> Config {
        self.tls = Some(tls);
        self
    }

    pub fn timeouts(mut self, connect: Duration, request: Duration) -> Config {
        self.connect_timeout = connect;
        self.request_timeout = request;
        self
    }

    pub fn encryption_key(mut self, key: EncryptionKey) -> Config {
        self.encryption_key = Some(key);
        self
    }

    pub fn retries_max(mut self, retries_max: u32) -> Config {
        self.retries_max = retries_max;
        self
    }

    /// The configuration from the environment:
    ///
    /// | variable | meaning |
    /// | --- | --- |
    /// | `E2DB_ENDPOINTS` | endpoints separated by commas (default `127.0.0.1:2379`) |
    /// | `E2DB_NAMESPACE` | the namespace (default `e2db`) |
    /// | `E2DB_CACERT`, `E2DB_CERT`, `E2DB_KEY` | TLS: CA, client certificate and key (PEM files) |
    /// | `E2DB_ENCRYPTION_KEY_FILE` | key for `encrypted` fields (see [`EncryptionKey::from_file`]) |
    /// | `E2DB_REQUEST_TIMEOUT_MS` | request timeout in milliseconds (default 10000) |
    pub fn from_env() -> Result<Config> {
        Config::from_vars(|name| std::env::var(name).ok())
    }

    /// [`Config::from_env`] over any source of variables.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let mut config = Config::default();
        if let Some(endpoints) = var("E2DB_ENDPOINTS") {
            config.endpoints = endpoints
                .split(',')
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty())
                .collect();
        }
        if let Some(namespace) = var("E2DB_NAMESPACE") {
            config.namespace = namespace;
        }
        let (cert, key) = (var("E2DB_CERT"), var("E2DB_KEY"));
        match var("E2DB_CACERT") {
            Some(ca_cert) => {
                config.tls = Some(TlsFiles {
                    ca_cert: ca_cert.into(),
                    cert: cert.map(Into::into),
                    key: key.map(Into::into),
                    domain: None,
                })
            }
            None if cert.is_some() || key.is_some() => {
                return Err(Error::Config(
                    "E2DB_CERT and E2DB_KEY need E2DB_CACERT, the CA that signed the server's certificate".into(),
                ))
            }
            None => {}
        }
        if let Some(path) = var("E2DB_ENCRYPTION_KEY_FILE") {
            config.encryption_key = Some(EncryptionKey::from_file(path.as_ref())?);
        }
        if let Some(ms) = var("E2DB_REQUEST_TIMEOUT_MS") {
            let ms: u64 = ms.trim().parse().map_err(|_| {
                Error::Config(format!(
                    "E2DB_REQUEST_TIMEOUT_MS={ms:?} is not a number of milliseconds"
                ))
            })?;
            config.request_timeout = Duration::from_millis(ms);
        }
        config.check()?;
        Ok(config)
    }

    /// Checks everything that can be checked without the network.
    pub fn check(&self) -> Result<()> {
        if self.endpoints.is_empty() {
            return Err(Error::Config(format!(
                "no endpoints; give at least one, such as {DEFAULT_ENDPOINT}"
            )));
        }
        for endpoint in &self.endpoints {
            let tls_scheme = endpoint.starts_with("https://");
            if tls_scheme && self.tls.is_none() {
                return Err(Error::Config(format!(
                    "endpoint {endpoint} is https but no TLS is configured; give the CA certificate (TlsFiles, E2DB_CACERT)"
                )));
            }
            if endpoint.starts_with("http://") && self.tls.is_some() {
                return Err(Error::Config(format!(
                    "endpoint {endpoint} is plain http but TLS is configured; use https://"
                )));
            }
        }
        check_namespace(&self.namespace).map_err(Error::Config)?;
        if let Some(tls) = &self.tls {
            if tls.cert.is_some() != tls.key.is_some() {
                return Err(Error::Config(
                    "a client certificate needs its key and a key its certificate; give both or neither".into(),
                ));
            }
        }
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(Error::Config("timeouts must be longer than zero".into()));
        }
        if self.retries_max == 0 || self.retries_max > RETRIES_MAX_LIMIT {
            return Err(Error::Config(format!(
                "retries_max is {}; give 1 to {RETRIES_MAX_LIMIT}",
                self.retries_max
            )));
        }
        Ok(())
    }

    /// The endpoints with their scheme.
    pub(crate) fn endpoint_urls(&self) -> Vec<String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        self.endpoints
            .iter()
            .map(|e| {
                if e.contains("://") {
                    e.clone()
                } else {
                    format!("{scheme}://{e}")
                }
            })
            .collect()
    }

    /// The etcd-client options, with the TLS files read.
    pub(crate) fn connect_options(&self) -> Result<ConnectOptions> {
        let mut options = ConnectOptions::new().with_connect_timeout(self.connect_timeout);
        if let Some(tls) = &self.tls {
            let read = |path: &PathBuf, what: &str| {
                std::fs::read(path).map_err(|e| {
                    Error::Config(format!("cannot read the {what} {}: {e}", path.display()))
                })
            };
            let mut tls_options = TlsOptions::new()
                .ca_certificate(Certificate::from_pem(read(&tls.ca_cert, "CA certificate")?));
            if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
                tls_options = tls_options.identity(Identity::from_pem(
                    read(cert, "client certificate")?,
                    read(key, "client key")?,
                ));
            }
            if let Some(domain) = &tls.domain {
                tls_options = tls_options.domain_name(domain.clone());
            }
            options = options.with_tls(tls_options);
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn environment() {
        let config = Config::from_vars(vars(&[])).unwrap();
        assert_eq!(config.endpoint_urls(), ["http://127.0.0.1:2379"]);
        assert_eq!(config.namespace, DEFAULT_NAMESPACE);
        let config = Config::from_vars(vars(&[
            ("E2DB_ENDPOINTS", "a:2379, b:2379"),
            ("E2DB_NAMESPACE", "prod/app"),
            ("E2DB_CACERT", "/ca.crt"),
            ("E2DB_CERT", "/c.crt"),
            ("E2DB_KEY", "/c.key"),
            ("E2DB_REQUEST_TIMEOUT_MS", "250"),
        ]))
        .unwrap();
        assert_eq!(config.endpoint_urls(), ["https://a:2379", "https://b:2379"]);
        assert_eq!(config.namespace, "prod/app");
        assert_eq!(config.request_timeout, Duration::from_millis(250));
        assert_eq!(
            config.tls.as_ref().map(|t| t.ca_cert.clone()),
            Some("/ca.crt".into())
        );
    }

    #[test]
    fn refusals_say_what_to_do() {
        let refused = |pairs: &[(&str, &str)]| match Config::from_vars(vars(pairs)) {
            Err(Error::Config(message)) => message,
            other => panic!("{pairs:?} accepted: {other:?}"),
        };
        assert!(refused(&[("E2DB_CERT", "/c.crt")]).contains("E2DB_CACERT"));
        assert!(refused(&[("E2DB_CACERT", "/ca"), ("E2DB_CERT", "/c")]).contains("both"));
        assert!(refused(&[("E2DB_ENDPOINTS", "https://a:1")]).contains("CA certificate"));
        assert!(refused(&[("E2DB_ENDPOINTS", " , ")]).contains("no endpoints"));
        assert!(refused(&[("E2DB_NAMESPACE", "a/../b")]).contains("namespace"));
        assert!(refused(&[("E2DB_REQUEST_TIMEOUT_MS", "soon")]).contains("milliseconds"));
        assert!(
            refused(&[("E2DB_ENCRYPTION_KEY_FILE", "/nonexistent/key")]).contains("cannot read")
        );
        let no_retries = Config::default().retries_max(0).check();
        assert!(matches!(no_retries, Err(Error::Config(m)) if m.contains("retries_max")));
    }

    #[test]
    fn tls_files_are_read_at_connect() {
        let config = Config::new(["https://127.0.0.1:1"]).tls(TlsFiles {
            ca_cert: "/nonexistent/ca.crt".into(),
            cert: None,
            key: None,
            domain: None,
        });
        config.check().unwrap();
        match config.connect_options() {
            Err(Error::Config(message)) => assert!(message.contains("/nonexistent/ca.crt")),
            other => panic!("unreadable CA accepted: {other:?}"),
        }
    }
}
