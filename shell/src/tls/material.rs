//! The node's certificates and keys, checked, and swapped in place when
//! they are reloaded: new handshakes use the new ones, open connections
//! keep theirs.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

use crate::cli::TlsArgs;
use crate::pki::check::{load_ca, load_pair, CheckedCa, CheckedPair};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// Which certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Peer,
    Client,
}

/// Where a certificate and its key are.
#[derive(Debug, Clone)]
struct PairPaths {
    cert: PathBuf,
    key: PathBuf,
}

/// The CA and the three pairs, as last loaded.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub ca: CheckedCa,
    pub server: CheckedPair,
    pub peer: CheckedPair,
    pub client: CheckedPair,
}

/// The node's TLS material.
pub struct Material {
    ca_path: PathBuf,
    /// Whether the client port asks clients for a certificate.
    client_cert_auth: bool,
    paths: [PairPaths; 3],
    current: RwLock<Arc<Loaded>>,
}

fn pair_paths(
    role: &str,
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
) -> Result<PairPaths, TlsError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(PairPaths {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => Err(TlsError(format!(
            "--ca-cert turns TLS on: pass --{role}-cert and --{role}-key too (e2d pki gencerts makes them)"
        ))),
    }
}

impl Material {
    /// The material the flags name, checked; `None` without `--ca-cert`.
    pub fn from_args(args: &TlsArgs) -> Result<Option<Arc<Self>>, TlsError> {
        let Some(ca_path) = &args.ca_cert else {
            let given = [
                &args.server_cert,
                &args.server_key,
                &args.peer_cert,
                &args.peer_key,
                &args.client_cert,
                &args.client_key,
            ];
            if given.iter().any(|p| p.is_some()) {
                return Err(TlsError(
                    "certificates were given without --ca-cert: pass the CA that signed them"
                        .into(),
                ));
            }
            return Ok(None);
        };
        let paths = [
            pair_paths("server", &args.server_cert, &args.server_key)?,
            pair_paths("peer", &args.peer_cert, &args.peer_key)?,
            pair_paths("client", &args.client_cert, &args.client_key)?,
        ];
        let loaded = load(ca_path, &paths)?;
        Ok(Some(Arc::new(Self {
            ca_path: ca_path.clone(),
            client_cert_auth: args.client_cert_auth,
            paths,
            current: RwLock::new(Arc::new(loaded)),
        })))
    }

    pub fn current(&self) -> Arc<Loaded> {
        crate::fail_stop::read(&self.current).clone()
    }

    /// Loads the files again; on any fault the old material stays and the
    /// fault is returned.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = load(&self.ca_path, &self.paths)?;
        *crate::fail_stop::write(&self.current) = Arc::new(loaded);
        Ok(())
    }

    /// The newest modification time of the files, to notice a change.
    pub fn files_modified(&self) -> Option<std::time::SystemTime> {
        std::iter::once(&self.ca_path)
            .chain(self.paths.iter().flat_map(|p| [&p.cert, &p.key]))
            .filter_map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
            .max()
    }

    /// Whether the port of `role` asks its clients for a certificate: the
    /// peer port always, the client port unless `--client-cert-auth=false`.
    pub fn asks_client_certificate(&self, role: Role) -> bool {
        role != Role::Server || self.client_cert_auth
    }

    /// A server configuration for `role` (the client or the peer port)
    /// that always presents the current certificate and, if the port
    /// [asks for one](Self::asks_client_certificate), demands a client
    /// certificate the CA signed (otherwise, as etcd without client
    /// certificate authentication, it asks for none).
    pub fn server_config(
        self: &Arc<Self>,
        role: Role,
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?;
        let builder = if self.asks_client_certificate(role) {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(self.current().ca.der.clone())
                .map_err(|e| TlsError(format!("the CA certificate cannot be a trust root: {e}")))?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError(format!("client verification: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_cert_resolver(Arc::new(Resolver {
            material: self.clone(),
            role,
        }));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

fn load(ca_path: &std::path::Path, paths: &[PairPaths; 3]) -> Result<Loaded, TlsError> {
    let ca = load_ca(ca_path).map_err(|e| TlsError(e.to_string()))?;
    let pair = |p: &PairPaths| {
        load_pair(&p.cert, &p.key, &ca.der, ca_path).map_err(|e| TlsError(e.to_string()))
    };
    Ok(Loaded {
        server: pair(&paths[0])?,
        peer: pair(&paths[1])?,
        client: pair(&paths[2])?,
        ca,
    })
}

impl Loaded {
    pub fn pair(&self, role: Role) -> &CheckedPair {
        match role {
            Role::Server => &self.server,
            Role::Peer => &self.peer,
            Role::Client => &self.client,
        }
    }
}

/// Presents the current certificate of a role at every handshake.
#[derive(Debug)]
struct Resolver {
    material: Arc<Material>,
    role: Role,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Material({})", self.ca_path.display())
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.material.current().pair(self.role).certified.clone())
    }
}
