//! The node's certificates and keys, checked, and swapped in place when
//! they are reloaded: new handshakes use the new ones, open connections
//! keep theirs.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use e2d_core::cert_lifetime::{Standing, Validity};

use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

use crate::cli::TlsArgs;
use crate::pki::check::{load_ca, load_pair, CheckedCa, CheckedPair};
use crate::pki::gencerts::load_issuer;
use crate::pki::renew::renew;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

pub use crate::pki::gencerts::Role;

/// Where a certificate and its key are.
#[derive(Debug, Clone)]
struct PairPaths {
    cert: PathBuf,
    key: PathBuf,
}

/// The CA and the pairs, as last loaded.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub ca: CheckedCa,
    pub server: CheckedPair,
    pub peer: CheckedPair,
    /// The client pair, when given: checked like the others, though the
    /// node calls only other members' peer ports.
    pub client: Option<CheckedPair>,
}

/// The node's TLS material.
pub struct Material {
    ca_path: PathBuf,
    /// Whether the client port asks clients for a certificate.
    client_cert_auth: bool,
    paths: Paths,
    /// The CA key, when this node renews its own certificates.
    ca_key: Option<PathBuf>,
    current: RwLock<Arc<Loaded>>,
}

/// One of the node's certificates, for `/metrics` and `e2d status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateState {
    /// `ca`, `server`, `peer` or `client`.
    pub name: &'static str,
    pub validity: Validity,
    /// Whether this node renews it (it holds the CA key; the CA itself is
    /// never renewed here).
    pub renewed_here: bool,
}

impl CertificateState {
    /// Whether it ends within 30 days of `now_s` with nobody here to renew
    /// it: warned about in the log and on `/metrics`.
    pub fn expiring(&self, now_s: i64) -> bool {
        !self.renewed_here && self.validity.expiry_warning_due(now_s)
    }

    /// When it ends, RFC 3339 in UTC.
    pub fn not_after_text(&self) -> String {
        let not_after_ms = u64::try_from(self.validity.not_after_s).unwrap_or(0) * 1000;
        e2d_core::schedule::utc_rfc3339(not_after_ms)
    }
}

/// Where the pairs are: the server's and the peer's are required, the
/// client's optional.
#[derive(Debug, Clone)]
struct Paths {
    server: PairPaths,
    peer: PairPaths,
    client: Option<PairPaths>,
}

impl Paths {
    fn all(&self) -> impl Iterator<Item = &PairPaths> {
        self.by_role().map(|(_, paths)| paths)
    }

    fn by_role(&self) -> impl Iterator<Item = (Role, &PairPaths)> {
        [(Role::Server, &self.server), (Role::Peer, &self.peer)]
            .into_iter()
            .chain(self.client.as_ref().map(|paths| (Role::Client, paths)))
    }
}

fn pair_paths(
    role: &str,
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
) -> Result<Option<PairPaths>, TlsError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(PairPaths {
            cert: cert.clone(),
            key: key.clone(),
        })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(TlsError(format!(
            "--{role}-cert was given without --{role}-key: pass both"
        ))),
        (None, Some(_)) => Err(TlsError(format!(
            "--{role}-key was given without --{role}-cert: pass both"
        ))),
    }
}

fn required_pair_paths(
    role: &str,
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
) -> Result<PairPaths, TlsError> {
    pair_paths(role, cert, key)?.ok_or_else(|| {
        TlsError(format!(
            "--ca-cert turns TLS on: pass --{role}-cert and --{role}-key too (e2d pki gencerts makes them)"
        ))
    })
}

impl Material {
    /// The material the flags name, checked; `None` without `--ca-cert`.
    /// With `ca_key`, when it is the CA's key, the node renews its own
    /// certificates.
    pub fn from_args(args: &TlsArgs, ca_key: Option<&Path>) -> Result<Option<Arc<Self>>, TlsError> {
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
        let paths = Paths {
            server: required_pair_paths("server", &args.server_cert, &args.server_key)?,
            peer: required_pair_paths("peer", &args.peer_cert, &args.peer_key)?,
            client: pair_paths("client", &args.client_cert, &args.client_key)?,
        };
        let loaded = load(ca_path, &paths)?;
        // A CA key that is not the TLS CA's may still seal snapshots and
        // gossip; it only cannot renew.
        let ca_key = ca_key.filter(|ca_key| match load_issuer(ca_path, ca_key) {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(
                    "the certificates will not renew themselves: --ca-key cannot sign for --ca-cert ({e})"
                );
                false
            }
        });
        Ok(Some(Arc::new(Self {
            ca_path: ca_path.clone(),
            client_cert_auth: args.client_cert_auth,
            paths,
            ca_key: ca_key.map(Path::to_path_buf),
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

    /// Whether this node renews its certificates (it has the CA key).
    pub fn renews(&self) -> bool {
        self.ca_key.is_some()
    }

    /// The CA's and the pairs' validity, as last loaded.
    pub fn certificates(&self) -> Vec<CertificateState> {
        let loaded = self.current();
        let ca = CertificateState {
            name: "ca",
            validity: loaded.ca.validity,
            renewed_here: false,
        };
        let pairs = Role::ALL.into_iter().filter_map(|role| {
            Some(CertificateState {
                name: role.file_stem(),
                validity: loaded.pair(role)?.validity,
                renewed_here: self.renews(),
            })
        });
        std::iter::once(ca).chain(pairs).collect()
    }

    /// Renews, with the CA key, every certificate whose renewal is due at
    /// `now_s`, then loads the new ones; returns the roles renewed. Each
    /// pair is renewed while its directory is locked, and only if the
    /// files still hold a certificate that is due: nodes that share the
    /// files renew them once.
    pub fn renew_due(&self, now_s: i64) -> Result<Vec<Role>, TlsError> {
        let Some(ca_key) = &self.ca_key else {
            return Ok(Vec::new());
        };
        let loaded = self.current();
        let due: Vec<(Role, &PairPaths)> = self
            .paths
            .by_role()
            .filter(|(role, _)| {
                loaded
                    .pair(*role)
                    .is_some_and(|pair| pair.validity.standing(now_s) == Standing::RenewalDue)
            })
            .collect();
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let issuer = load_issuer(&self.ca_path, ca_key).map_err(|e| TlsError(e.to_string()))?;
        let mut renewed = Vec::new();
        for (role, paths) in due {
            let _lock = lock_dir_of(&paths.cert)?;
            let on_disk = load_pair(&paths.cert, &paths.key, &loaded.ca.der, &self.ca_path);
            let still_due = on_disk.map_or(true, |pair| {
                pair.validity.standing(now_s) == Standing::RenewalDue
            });
            // Nodes sharing the files: another may have renewed them.
            if still_due {
                renew(&issuer, role, &paths.cert, &paths.key, now_s)
                    .map_err(|e| TlsError(e.to_string()))?;
                renewed.push(role);
            }
        }
        self.reload()?;
        Ok(renewed)
    }

    /// The newest modification time of the files, to notice a change.
    pub fn files_modified(&self) -> Option<std::time::SystemTime> {
        std::iter::once(&self.ca_path)
            .chain(self.paths.all().flat_map(|p| [&p.cert, &p.key]))
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

/// An exclusive lock on the directory of `path`, held until dropped.
fn lock_dir_of(path: &Path) -> Result<File, TlsError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let locked = File::open(dir).and_then(|file| file.lock().map(|()| file));
    locked.map_err(|e| {
        TlsError(format!(
            "cannot lock {} to renew the certificate in it: {e}",
            dir.display()
        ))
    })
}

fn load(ca_path: &Path, paths: &Paths) -> Result<Loaded, TlsError> {
    let ca = load_ca(ca_path).map_err(|e| TlsError(e.to_string()))?;
    let pair = |p: &PairPaths| {
        load_pair(&p.cert, &p.key, &ca.der, ca_path).map_err(|e| TlsError(e.to_string()))
    };
    Ok(Loaded {
        server: pair(&paths.server)?,
        peer: pair(&paths.peer)?,
        client: paths.client.as_ref().map(pair).transpose()?,
        ca,
    })
}

impl Loaded {
    /// The pair of `role`; `None` for a client pair that was not given.
    pub fn pair(&self, role: Role) -> Option<&CheckedPair> {
        match role {
            Role::Server => Some(&self.server),
            Role::Peer => Some(&self.peer),
            Role::Client => self.client.as_ref(),
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
        Some(self.material.current().pair(self.role)?.certified.clone())
    }
}
