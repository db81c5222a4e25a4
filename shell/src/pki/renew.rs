//! Renewing a node's own certificate with the CA key: the same subject,
//! names and addresses, and span of validity, with a new key of the same
//! kind, written over the old files.

use std::net::IpAddr;
use std::path::Path;

use e2d_core::cert_lifetime::Validity;
use rcgen::{DistinguishedName, DnType, Issuer, KeyPair, SanType};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::X509Certificate;

use super::check::{load_certs, parse, validity_of};
use super::gencerts::{issue, san, write_pair, Holder, Role};
use super::{read_file, PkiError};

fn invalid(path: &Path, what: &str) -> PkiError {
    PkiError::Invalid(format!(
        "{}: cannot renew it, {what}; replace it by hand (e2d pki gencerts)",
        path.display()
    ))
}

/// The subject of `cert`, attribute by attribute.
fn subject_of(cert: &X509Certificate<'_>, path: &Path) -> Result<DistinguishedName, PkiError> {
    let mut subject = DistinguishedName::new();
    for attribute in cert.subject().iter_attributes() {
        let oid: Vec<u64> = attribute
            .attr_type()
            .iter()
            .ok_or_else(|| invalid(path, "its subject has an attribute type too long to read"))?
            .collect();
        let value = attribute
            .as_str()
            .map_err(|_| invalid(path, "its subject has a value that is not text"))?;
        subject.push(DnType::from_oid(&oid), value.to_string());
    }
    Ok(subject)
}

/// The names and addresses `cert` is valid for.
fn names_of(cert: &X509Certificate<'_>, path: &Path) -> Result<Vec<SanType>, PkiError> {
    let Some(extension) = cert
        .subject_alternative_name()
        .map_err(|_| invalid(path, "its subject alternative names cannot be read"))?
    else {
        return Ok(Vec::new());
    };
    let ia5 = |text: &str| {
        text.to_string()
            .try_into()
            .map_err(|_| invalid(path, "it names something that is not ASCII"))
    };
    extension
        .value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(dns) => san(dns),
            GeneralName::IPAddress(bytes) => {
                let ip = match bytes.len() {
                    4 => <[u8; 4]>::try_from(*bytes).map(IpAddr::from).ok(),
                    16 => <[u8; 16]>::try_from(*bytes).map(IpAddr::from).ok(),
                    _ => None,
                };
                ip.map(SanType::IpAddress)
                    .ok_or_else(|| invalid(path, "it holds an IP address of a length IP has not"))
            }
            GeneralName::URI(uri) => ia5(uri).map(SanType::URI),
            GeneralName::RFC822Name(email) => ia5(email).map(SanType::Rfc822Name),
            _ => Err(invalid(
                path,
                "it names a kind of subject alternative name e2d does not make",
            )),
        })
        .collect()
}

/// Issues `role`'s certificate at `cert_path` again as of `now_s`, with a
/// new key like the one at `key_path`, and writes both over the old ones
/// (the key first). Returns the new validity.
pub fn renew(
    issuer: &Issuer<'_, KeyPair>,
    role: Role,
    cert_path: &Path,
    key_path: &Path,
    now_s: i64,
) -> Result<Validity, PkiError> {
    let der = load_certs(cert_path)?.swap_remove(0);
    let cert = parse(&der, cert_path)?;
    let holder = Holder {
        subject: subject_of(&cert, cert_path)?,
        names: names_of(&cert, cert_path)?,
    };
    let old_key = KeyPair::from_pem(&read_file(key_path)?)
        .map_err(|e| invalid(key_path, &format!("it is not a key rcgen reads ({e})")))?;
    let key = KeyPair::generate_for(old_key.algorithm()).map_err(|e| {
        invalid(
            key_path,
            &format!("no new key of its kind can be made ({e})"),
        )
    })?;
    let validity = validity_of(&cert).renewed_at(now_s);
    let renewed = issue(issuer, role, &holder, validity, &key)?;
    write_pair(cert_path, &renewed, key_path, &key, true)?;
    Ok(validity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::check::{load_ca, load_pair, now_unix_s};
    use crate::pki::gencerts::{gencerts, load_issuer};
    use crate::pki::init::{init, KeyType};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    #[test]
    fn a_renewed_certificate_keeps_its_names_and_span_with_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let (ca_cert, ca_key) = (dir.path().join("ca.crt"), dir.path().join("ca.key"));
        init(&ca_cert, &ca_key, KeyType::Ecdsa, false).unwrap();
        let hosts = ["node-1.example".to_string(), "10.1.2.3".to_string()];
        gencerts(
            &ca_cert,
            &ca_key,
            &hosts,
            dir.path(),
            KeyType::Rsa,
            600,
            false,
        )
        .unwrap();
        let (cert_path, key_path) = (dir.path().join("peer.crt"), dir.path().join("peer.key"));
        let ca = load_ca(&ca_cert).unwrap();
        let before = load_pair(&cert_path, &key_path, &ca.der, &ca_cert).unwrap();
        let issuer = load_issuer(&ca_cert, &ca_key).unwrap();
        let now_s = now_unix_s() + 30;
        let validity = renew(&issuer, Role::Peer, &cert_path, &key_path, now_s).unwrap();
        let after = load_pair(&cert_path, &key_path, &ca.der, &ca_cert).unwrap();
        assert_eq!(after.validity, validity);
        assert_eq!(validity.span_s(), before.validity.span_s());
        assert!(validity.not_after_s > before.validity.not_after_s);
        assert_ne!(after.key_pem, before.key_pem);
        assert!(after.key_pem.contains("PRIVATE KEY"));
        let describe = |pem: &str| {
            let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
            let cert = parse(&der, &cert_path).unwrap();
            let subject = cert.subject().to_string();
            let names = names_of(&cert, &cert_path).unwrap();
            let usages = cert.extended_key_usage().unwrap().unwrap().value.clone();
            let rsa = KeyPair::from_pem(&std::fs::read_to_string(&key_path).unwrap())
                .unwrap()
                .algorithm()
                == &rcgen::PKCS_RSA_SHA256;
            (
                subject,
                format!("{names:?}"),
                usages.server_auth,
                usages.client_auth,
                rsa,
            )
        };
        let (subject, names, server_auth, client_auth, rsa) = describe(&after.chain_pem);
        assert_eq!(
            (subject.as_str(), server_auth, client_auth, rsa),
            ("CN=e2d peer, O=e2d", true, true, true)
        );
        assert_eq!(names, describe(&before.chain_pem).1);
        assert!(names.contains("node-1.example") && names.contains("10.1.2.3"));
    }
}
