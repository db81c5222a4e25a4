//! `e2d pki gencerts`: the server, peer and client certificates, signed by
//! the CA.

use std::net::IpAddr;
use std::path::Path;

use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use super::init::{new_key, KeyType};
use super::{read_file, write_file, PkiError, LEAF_VALIDITY_DAYS};

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The client port: server authentication.
    Server,
    /// The peer port, which both accepts and makes connections.
    Peer,
    /// A client of the client port (etcdctl, or e2d calling other members).
    Client,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Server, Role::Peer, Role::Client];

    pub fn file_stem(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Peer => "peer",
            Role::Client => "client",
        }
    }

    fn usages(self) -> Vec<ExtendedKeyUsagePurpose> {
        match self {
            Role::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Role::Peer => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Role::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        }
    }
}

/// The names a certificate is valid for: `hosts`, then 127.0.0.1,
/// localhost and this machine's own addresses, each once.
pub fn subject_alt_names(hosts: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let detected = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|interface| !interface.is_loopback())
        .map(|interface| interface.ip().to_string());
    let all = hosts
        .iter()
        .map(|h| h.trim().to_string())
        .chain(["127.0.0.1".to_string(), "localhost".to_string()])
        .chain(detected);
    for name in all {
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

fn san(name: &str) -> Result<SanType, PkiError> {
    match name.parse::<IpAddr>() {
        Ok(ip) => Ok(SanType::IpAddress(ip)),
        Err(_) => name
            .to_string()
            .try_into()
            .map(SanType::DnsName)
            .map_err(|e| {
                PkiError::Invalid(format!(
                    "--hosts: {name:?} is neither an IP address nor a DNS name: {e}"
                ))
            }),
    }
}

/// Signs a certificate for `role` valid for `names`; returns the
/// certificate and key as PEM.
pub fn issue(
    issuer: &Issuer<'_, KeyPair>,
    role: Role,
    names: &[String],
    key_type: KeyType,
) -> Result<(String, String), PkiError> {
    let key = new_key(key_type)?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("e2d {}", role.file_stem()));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "e2d");
    params.subject_alt_names = names.iter().map(|n| san(n)).collect::<Result<_, _>>()?;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = role.usages();
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(super::BACKDATE_MINUTES);
    params.not_after = now + Duration::days(LEAF_VALIDITY_DAYS);
    let cert = params.signed_by(&key, issuer).map_err(|e| {
        PkiError::Invalid(format!(
            "cannot sign the {} certificate: {e}",
            role.file_stem()
        ))
    })?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Loads the CA that signs.
pub fn load_issuer(ca_cert: &Path, ca_key: &Path) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let key = KeyPair::from_pem(&read_file(ca_key)?).map_err(|e| {
        PkiError::Invalid(format!(
            "the CA key {} is not a private key rcgen can sign with (PKCS#8, SEC1 or PKCS#1 PEM): {e}",
            ca_key.display()
        ))
    })?;
    let cert = read_file(ca_cert)?;
    super::check::key_matches_cert(&key, &cert, ca_key, ca_cert)?;
    Issuer::from_ca_cert_pem(&cert, key).map_err(|e| {
        PkiError::Invalid(format!(
            "the CA certificate {} cannot be read: {e}",
            ca_cert.display()
        ))
    })
}

/// Writes `<role>.crt` and `<role>.key` for every role into `output_dir`.
pub fn gencerts(
    ca_cert: &Path,
    ca_key: &Path,
    hosts: &[String],
    output_dir: &Path,
    key_type: KeyType,
    force: bool,
) -> Result<Vec<String>, PkiError> {
    let issuer = load_issuer(ca_cert, ca_key)?;
    let names = subject_alt_names(hosts);
    for role in Role::ALL {
        for ext in ["crt", "key"] {
            let path = output_dir.join(format!("{}.{ext}", role.file_stem()));
            if path.exists() && !force {
                return Err(PkiError::Exists {
                    path: path.display().to_string(),
                    why: "",
                });
            }
        }
    }
    for role in Role::ALL {
        let (cert, key) = issue(&issuer, role, &names, key_type)?;
        let stem = role.file_stem();
        write_file(
            &output_dir.join(format!("{stem}.key")),
            &key,
            0o600,
            force,
            "",
        )?;
        write_file(
            &output_dir.join(format!("{stem}.crt")),
            &cert,
            0o644,
            force,
            "",
        )?;
    }
    Ok(names)
}
