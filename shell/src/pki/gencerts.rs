//! `e2d pki gencerts`: the server, peer and client certificates, signed by
//! the CA.

use std::net::IpAddr;
use std::path::Path;

use e2d_core::cert_lifetime::Validity;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

use super::init::{new_key, KeyType};
use super::{read_file, write_file, PkiError};

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

pub fn san(name: &str) -> Result<SanType, PkiError> {
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

/// What a certificate names: its subject and the names and addresses it
/// is valid for.
#[derive(Debug, Clone)]
pub struct Holder {
    pub subject: DistinguishedName,
    pub names: Vec<SanType>,
}

impl Holder {
    /// What `e2d pki gencerts` names: `e2d <role>`, valid for `names`.
    pub fn of_role(role: Role, names: &[String]) -> Result<Self, PkiError> {
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, format!("e2d {}", role.file_stem()));
        subject.push(DnType::OrganizationName, "e2d");
        let names = names.iter().map(|n| san(n)).collect::<Result<_, _>>()?;
        Ok(Self { subject, names })
    }
}

/// Unix seconds as the time a certificate holds.
pub fn certificate_time(unix_s: i64) -> Result<OffsetDateTime, PkiError> {
    OffsetDateTime::from_unix_timestamp(unix_s)
        .map_err(|e| PkiError::Invalid(format!("{unix_s} is not a certificate's time: {e}")))
}

/// Signs a certificate for `role` naming `holder`, valid for `validity`,
/// for `key`; returns the certificate as PEM.
pub fn issue(
    issuer: &Issuer<'_, KeyPair>,
    role: Role,
    holder: &Holder,
    validity: Validity,
    key: &KeyPair,
) -> Result<String, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = holder.subject.clone();
    params.subject_alt_names = holder.names.clone();
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = role.usages();
    params.use_authority_key_identifier_extension = true;
    params.not_before = certificate_time(validity.not_before_s)?;
    params.not_after = certificate_time(validity.not_after_s)?;
    let cert = params.signed_by(key, issuer).map_err(|e| {
        PkiError::Invalid(format!(
            "cannot sign the {} certificate: {e}",
            role.file_stem()
        ))
    })?;
    Ok(cert.pem())
}

/// Writes a certificate and its key over `cert_path` and `key_path`, the
/// key first: each file is replaced whole.
pub fn write_pair(
    cert_path: &Path,
    cert_pem: &str,
    key_path: &Path,
    key: &KeyPair,
    force: bool,
) -> Result<(), PkiError> {
    write_file(key_path, &key.serialize_pem(), 0o600, force, "")?;
    write_file(cert_path, cert_pem, 0o644, force, "")
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

/// Writes `<role>.crt` and `<role>.key` for every role into `output_dir`,
/// valid for `lifetime_s` from now.
pub fn gencerts(
    ca_cert: &Path,
    ca_key: &Path,
    hosts: &[String],
    output_dir: &Path,
    key_type: KeyType,
    lifetime_s: i64,
    force: bool,
) -> Result<Vec<String>, PkiError> {
    let issuer = load_issuer(ca_cert, ca_key)?;
    let names = subject_alt_names(hosts);
    let path = |role: Role, ext: &str| output_dir.join(format!("{}.{ext}", role.file_stem()));
    for role in Role::ALL {
        for ext in ["crt", "key"] {
            let path = path(role, ext);
            if path.exists() && !force {
                return Err(PkiError::Exists {
                    path: path.display().to_string(),
                    why: "",
                });
            }
        }
    }
    let validity = Validity::issued_at(OffsetDateTime::now_utc().unix_timestamp(), lifetime_s);
    for role in Role::ALL {
        let key = new_key(key_type)?;
        let cert = issue(
            &issuer,
            role,
            &Holder::of_role(role, &names)?,
            validity,
            &key,
        )?;
        write_pair(&path(role, "crt"), &cert, &path(role, "key"), &key, force)?;
    }
    Ok(names)
}

/// `--days` as seconds: a positive number of days, fractions allowed.
pub fn lifetime_s_of_days(days: f64) -> Result<i64, PkiError> {
    const DAYS_MIN: f64 = 0.001;
    const DAYS_MAX: f64 = 100.0 * 365.0;
    if !(DAYS_MIN..=DAYS_MAX).contains(&days) {
        return Err(PkiError::Invalid(format!(
            "--days {days}: give a number of days from {DAYS_MIN} (86 seconds) to {DAYS_MAX}, such as 365 or 0.5"
        )));
    }
    Ok((days * 86_400.0).round() as i64)
}
