//! Loading the certificates and keys `e2d run` is given, with an error
//! that names the file and the fault: missing, not PEM, expired, not yet
//! valid, not signed by the CA, or a key that is not the certificate's.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{read_file, PkiError};
use e2d_core::cert_lifetime::Validity;

/// A certificate with its key, checked: ready to present as a server (the
/// signing key made once), and as the PEM a client identity takes.
#[derive(Debug, Clone)]
pub struct CheckedPair {
    pub certified: Arc<CertifiedKey>,
    pub chain_pem: String,
    pub key_pem: String,
    /// The leaf certificate's validity.
    pub validity: Validity,
}

/// The CA certificate, checked, as DER and as the PEM it was read from.
#[derive(Debug, Clone)]
pub struct CheckedCa {
    pub der: CertificateDer<'static>,
    pub pem: String,
    pub validity: Validity,
}

fn invalid(message: String) -> PkiError {
    PkiError::Invalid(message)
}

/// The certificates in the PEM file at `path`.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    certs_in(&read_file(path)?, path)
}

/// The certificates in `text`, read from `path`.
fn certs_in(text: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(format!("{} is not a PEM certificate: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(format!(
            "{} holds no certificate (no BEGIN CERTIFICATE block)",
            path.display()
        )));
    }
    Ok(certs)
}

pub fn parse<'a>(der: &'a [u8], path: &Path) -> Result<X509Certificate<'a>, PkiError> {
    X509Certificate::from_der(der)
        .map(|(_, cert)| cert)
        .map_err(|e| {
            invalid(format!(
                "{} is not an X.509 certificate: {e}",
                path.display()
            ))
        })
}

/// The validity `cert` states.
pub fn validity_of(cert: &X509Certificate<'_>) -> Validity {
    let validity = cert.validity();
    Validity {
        not_before_s: validity.not_before.timestamp(),
        not_after_s: validity.not_after.timestamp(),
    }
}

/// Fails unless `cert` is valid at `now_unix_s`.
fn check_validity(
    cert: &X509Certificate<'_>,
    path: &Path,
    now_unix_s: i64,
) -> Result<(), PkiError> {
    let validity = cert.validity();
    if now_unix_s < validity.not_before.timestamp() {
        return Err(invalid(format!(
            "{} is not valid yet: valid from {} (is the clock right?)",
            path.display(),
            validity.not_before
        )));
    }
    if now_unix_s > validity.not_after.timestamp() {
        return Err(invalid(format!(
            "{} expired on {}: make a new one (e2d pki gencerts)",
            path.display(),
            validity.not_after
        )));
    }
    Ok(())
}

pub fn now_unix_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The CA certificate at `path`, checked to be valid now.
pub fn load_ca(path: &Path) -> Result<CheckedCa, PkiError> {
    let pem = read_file(path)?;
    let der = certs_in(&pem, path)?.swap_remove(0);
    let cert = parse(&der, path)?;
    check_validity(&cert, path, now_unix_s())?;
    let validity = validity_of(&cert);
    Ok(CheckedCa { der, pem, validity })
}

/// The certificate at `cert_path` and its key at `key_path`, checked: valid
/// now, signed by `ca` (from `ca_path`), and the key is the certificate's.
pub fn load_pair(
    cert_path: &Path,
    key_path: &Path,
    ca: &CertificateDer<'_>,
    ca_path: &Path,
) -> Result<CheckedPair, PkiError> {
    let chain_pem = read_file(cert_path)?;
    let chain = certs_in(&chain_pem, cert_path)?;
    let leaf = parse(&chain[0], cert_path)?;
    check_validity(&leaf, cert_path, now_unix_s())?;
    let ca_cert = parse(ca, ca_path)?;
    leaf.verify_signature(Some(ca_cert.public_key()))
        .map_err(|_| {
            invalid(format!(
                "{} is not signed by the CA {}: sign it with that CA (e2d pki gencerts)",
                cert_path.display(),
                ca_path.display()
            ))
        })?;
    let key_text = read_file(key_path)?;
    let key = PrivateKeyDer::from_pem_slice(key_text.as_bytes()).map_err(|e| {
        invalid(format!(
            "{} is not a PEM private key (PKCS#8, SEC1 or PKCS#1): {e}",
            key_path.display()
        ))
    })?;
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).map_err(|e| {
        invalid(format!(
            "{} is a key of a kind TLS cannot use: {e}",
            key_path.display()
        ))
    })?;
    let public = signing.public_key().ok_or_else(|| {
        invalid(format!(
            "cannot derive the public key of {}",
            key_path.display()
        ))
    })?;
    if public.as_ref() != leaf.public_key().raw {
        return Err(invalid(format!(
            "{} is not the key of {}: pass the key made with that certificate",
            key_path.display(),
            cert_path.display()
        )));
    }
    let validity = validity_of(&leaf);
    Ok(CheckedPair {
        certified: Arc::new(CertifiedKey::new(chain, signing)),
        chain_pem,
        key_pem: key_text,
        validity,
    })
}

/// Fails unless `key` is the key of the certificate in `cert_pem`.
pub fn key_matches_cert(
    key: &rcgen::KeyPair,
    cert_pem: &str,
    key_path: &Path,
    cert_path: &Path,
) -> Result<(), PkiError> {
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| {
        invalid(format!(
            "{} is not a PEM certificate: {e}",
            cert_path.display()
        ))
    })?;
    let cert = parse(&der, cert_path)?;
    if key.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
        return Err(invalid(format!(
            "{} is not the key of {}",
            key_path.display(),
            cert_path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::gencerts::{issue, Holder, Role};
    use crate::pki::init::{init, KeyType};
    use std::path::PathBuf;

    /// A CA in a temp dir, and a leaf it signed whose validity starts and
    /// ends `days` from now.
    fn leaf_valid(dir: &Path, from_days: i64, to_days: i64) -> (PathBuf, PathBuf, PathBuf) {
        use rcgen::{CertificateParams, KeyPair};
        let (ca_cert, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
        init(&ca_cert, &ca_key, KeyType::Ecdsa, true).unwrap();
        let issuer = crate::pki::gencerts::load_issuer(&ca_cert, &ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(from_days);
        params.not_after = now + time::Duration::days(to_days);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let (cert_path, key_path) = (dir.join("leaf.crt"), dir.join("leaf.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (ca_cert, cert_path, key_path)
    }

    fn error_of(dir: &Path, from_days: i64, to_days: i64) -> String {
        let (ca_path, cert, key) = leaf_valid(dir, from_days, to_days);
        let ca = load_ca(&ca_path).unwrap();
        load_pair(&cert, &key, &ca.der, &ca_path)
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn expired_and_future_certificates_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(error_of(dir.path(), -30, -1).contains("expired on"));
        assert!(error_of(dir.path(), 2, 30).contains("is not valid yet"));
        assert_eq!(error_of(dir.path(), -1, 30), "");
    }

    #[test]
    fn issued_certificates_verify_with_their_ca_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let (ca_cert, ca_key) = (dir.path().join("ca.crt"), dir.path().join("ca.key"));
        init(&ca_cert, &ca_key, KeyType::Rsa, false).unwrap();
        let issuer = crate::pki::gencerts::load_issuer(&ca_cert, &ca_key).unwrap();
        let holder = Holder::of_role(Role::Peer, &["10.0.0.1".into()]).unwrap();
        let key = crate::pki::init::new_key(KeyType::Ecdsa).unwrap();
        let validity = Validity::issued_at(now_unix_s(), 86_400);
        let cert = issue(&issuer, Role::Peer, &holder, validity, &key).unwrap();
        std::fs::write(dir.path().join("peer.crt"), cert).unwrap();
        std::fs::write(dir.path().join("peer.key"), key.serialize_pem()).unwrap();
        let ca = load_ca(&ca_cert).unwrap();
        load_pair(
            &dir.path().join("peer.crt"),
            &dir.path().join("peer.key"),
            &ca.der,
            &ca_cert,
        )
        .unwrap();
        assert!(matches!(
            init(&ca_cert, &ca_key, KeyType::Ecdsa, false),
            Err(crate::pki::PkiError::Exists { .. })
        ));
    }
}
