//! `e2d pki init`: a new certificate authority.

use std::path::Path;

use e2d_core::cert_lifetime::Validity;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256,
};
use time::OffsetDateTime;

use super::gencerts::certificate_time;
use super::{write_file, PkiError, CA_VALIDITY_DAYS};

/// The CA's key algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyType {
    /// ECDSA on P-256 with SHA-256.
    Ecdsa,
    /// RSA 2048 with SHA-256.
    Rsa,
}

pub fn new_key(key_type: KeyType) -> Result<KeyPair, PkiError> {
    let algorithm = match key_type {
        KeyType::Ecdsa => &PKCS_ECDSA_P256_SHA256,
        KeyType::Rsa => &PKCS_RSA_SHA256,
    };
    KeyPair::generate_for(algorithm)
        .map_err(|e| PkiError::Invalid(format!("cannot make a key: {e}")))
}

/// Makes a CA and writes its certificate (0644) and key (0600).
pub fn init(ca_cert: &Path, ca_key: &Path, key_type: KeyType, force: bool) -> Result<(), PkiError> {
    const REPLACING: &str = " (every certificate the old CA signed stops being trusted)";
    for path in [ca_cert, ca_key] {
        if path.exists() && !force {
            return Err(PkiError::Exists {
                path: path.display().to_string(),
                why: REPLACING,
            });
        }
    }
    let key = new_key(key_type)?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "e2d CA");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "e2d");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let validity = Validity::issued_at(
        OffsetDateTime::now_utc().unix_timestamp(),
        CA_VALIDITY_DAYS * 86_400,
    );
    params.not_before = certificate_time(validity.not_before_s)?;
    params.not_after = certificate_time(validity.not_after_s)?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| PkiError::Invalid(format!("cannot sign the CA: {e}")))?;
    write_file(ca_key, &key.serialize_pem(), 0o600, force, REPLACING)?;
    write_file(ca_cert, &cert.pem(), 0o644, force, REPLACING)?;
    Ok(())
}
