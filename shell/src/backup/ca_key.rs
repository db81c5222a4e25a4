//! The snapshot keys, derived from the CA private key.
//!
//! The CA key arrives as PEM: PKCS#1 (`RSA PRIVATE KEY`), SEC1
//! (`EC PRIVATE KEY`) or PKCS#8 (`PRIVATE KEY`). Before deriving anything
//! the key is reduced to the secret itself, so the same key in another
//! encoding (`openssl pkcs8 -topk8` of it, say) still opens old snapshots:
//! an RSA key is its PKCS#1 DER, an EC key its private scalar, any other
//! PKCS#8 key the bytes of its `privateKey` field.
//!
//! From that secret HKDF-SHA-512 derives, each with its own info string,
//! the AES-256 key, the HMAC-SHA-512/256 key and an 8-byte key id that a
//! snapshot's header carries, so a snapshot sealed under another CA key is
//! told apart from a damaged one.

use base64::Engine;
use hkdf::Hkdf;
use sha2::Sha512;

const INFO_CIPHER: &[u8] = b"e2d snapshot v1 aes-256-ctr key";
const INFO_MAC: &[u8] = b"e2d snapshot v1 hmac-sha-512/256 key";
const INFO_KEY_ID: &[u8] = b"e2d snapshot v1 key id";

/// Largest CA key file read.
const KEY_FILE_BYTES_MAX: u64 = 64 * 1024;

pub const KEY_ID_BYTES: usize = 8;
pub const MAC_KEY_BYTES: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum CaKeyError {
    #[error("cannot read the CA key {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the CA key {path} is not a PEM private key: {reason}")]
    Format { path: String, reason: String },
}

/// The keys a snapshot is sealed with.
#[derive(Clone)]
pub struct SnapshotKeys {
    pub cipher: [u8; 32],
    pub mac: [u8; MAC_KEY_BYTES],
    pub key_id: [u8; KEY_ID_BYTES],
}

impl std::fmt::Debug for SnapshotKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SnapshotKeys(id {})", hex(&self.key_id))
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl SnapshotKeys {
    /// Reads the CA key at `path` and derives the snapshot keys from it.
    pub fn from_ca_key_file(path: &std::path::Path) -> Result<Self, CaKeyError> {
        Ok(Self::from_secret(&ca_secret_from_file(path)?))
    }

    /// Derives the snapshot keys from a PEM private key.
    pub fn from_pem(text: &str) -> Result<Self, String> {
        let secret = secret_of_pem(text)?;
        Ok(Self::from_secret(&secret))
    }

    fn from_secret(secret: &[u8]) -> Self {
        let hkdf = Hkdf::<Sha512>::new(None, secret);
        let mut keys = SnapshotKeys {
            cipher: [0; 32],
            mac: [0; MAC_KEY_BYTES],
            key_id: [0; KEY_ID_BYTES],
        };
        let lengths_fit = "HKDF-SHA-512 yields up to 16 KiB";
        hkdf.expand(INFO_CIPHER, &mut keys.cipher)
            .expect(lengths_fit);
        hkdf.expand(INFO_MAC, &mut keys.mac).expect(lengths_fit);
        hkdf.expand(INFO_KEY_ID, &mut keys.key_id)
            .expect(lengths_fit);
        keys
    }
}

/// The CA key at `path`, reduced to its secret (see the module docs).
pub fn ca_secret_from_file(path: &std::path::Path) -> Result<Vec<u8>, CaKeyError> {
    use std::io::Read;
    let shown = path.display().to_string();
    let read = |source| CaKeyError::Read {
        path: shown.clone(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(read)?
        .take(KEY_FILE_BYTES_MAX)
        .read_to_string(&mut text)
        .map_err(read)?;
    secret_of_pem(&text).map_err(|reason| CaKeyError::Format {
        path: shown,
        reason,
    })
}

/// The first PEM block's label and DER bytes.
fn pem_block(text: &str) -> Result<(String, Vec<u8>), String> {
    let begin = text.find("-----BEGIN ").ok_or("no \"-----BEGIN\" line")?;
    let rest = &text[begin + "-----BEGIN ".len()..];
    let label_end = rest.find("-----").ok_or("unterminated BEGIN line")?;
    let label = rest[..label_end].to_string();
    let body_and_end = &rest[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let end = body_and_end
        .find(&end_marker)
        .ok_or_else(|| format!("no \"{end_marker}\" line"))?;
    let body: String = body_and_end[..end]
        .lines()
        .filter(|line| !line.contains(':'))
        .flat_map(|line| line.chars().filter(|c| !c.is_whitespace()))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| format!("the base64 of the {label} block is malformed: {e}"))?;
    Ok((label, der))
}

const PASSPHRASE: &str = "the key is encrypted with a passphrase; write a decrypted copy (openssl pkey -in KEY -out PLAIN) and pass that";

fn secret_of_pem(text: &str) -> Result<Vec<u8>, String> {
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(PASSPHRASE.into());
    }
    let (label, der) = pem_block(text)?;
    match label.as_str() {
        "RSA PRIVATE KEY" => Ok(der),
        "EC PRIVATE KEY" => sec1_scalar(&der)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| "the EC PRIVATE KEY block is not a SEC1 key".into()),
        "PRIVATE KEY" => {
            let inner = pkcs8_private_key(&der).ok_or("the PRIVATE KEY block is not PKCS#8")?;
            Ok(sec1_scalar(inner).unwrap_or(inner).to_vec())
        }
        "ENCRYPTED PRIVATE KEY" => Err(PASSPHRASE.into()),
        other => Err(format!(
            "found a {other} block; expected RSA PRIVATE KEY, EC PRIVATE KEY or PRIVATE KEY"
        )),
    }
}

/// A DER element: its tag and contents; advances `input` past it.
fn der_next<'a>(input: &mut &'a [u8]) -> Option<(u8, &'a [u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 || rest.len() < octets {
            return None;
        }
        let (bytes, after) = rest.split_at(octets);
        rest = after;
        bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b))
    };
    if rest.len() < length {
        return None;
    }
    let (contents, after) = rest.split_at(length);
    *input = after;
    Some((tag, contents))
}

const DER_SEQUENCE: u8 = 0x30;
const DER_INTEGER: u8 = 0x02;
const DER_OCTET_STRING: u8 = 0x04;

/// SEC1 `ECPrivateKey`: `SEQUENCE { INTEGER 1, OCTET STRING key, ... }`.
fn sec1_scalar(der: &[u8]) -> Option<&[u8]> {
    let mut input = der;
    let (DER_SEQUENCE, mut fields) = der_next(&mut input)? else {
        return None;
    };
    let (DER_INTEGER, [1]) = der_next(&mut fields)? else {
        return None;
    };
    match der_next(&mut fields)? {
        (DER_OCTET_STRING, key) => Some(key),
        _ => None,
    }
}

/// PKCS#8 `PrivateKeyInfo`: `SEQUENCE { INTEGER version, SEQUENCE
/// algorithm, OCTET STRING privateKey, ... }`.
fn pkcs8_private_key(der: &[u8]) -> Option<&[u8]> {
    let mut input = der;
    let (DER_SEQUENCE, mut fields) = der_next(&mut input)? else {
        return None;
    };
    let (DER_INTEGER, _) = der_next(&mut fields)? else {
        return None;
    };
    let (DER_SEQUENCE, _) = der_next(&mut fields)? else {
        return None;
    };
    match der_next(&mut fields)? {
        (DER_OCTET_STRING, key) => Some(key),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A P-256 key made for these tests with `openssl ecparam -genkey`, as
    /// SEC1 and as PKCS#8 (`openssl pkcs8 -topk8 -nocrypt`).
    pub const EC_SEC1: &str = include_str!("testdata/ec_sec1.pem");
    pub const EC_PKCS8: &str = include_str!("testdata/ec_pkcs8.pem");
    /// A 2048-bit RSA key, as PKCS#1 and as PKCS#8.
    pub const RSA_PKCS1: &str = include_str!("testdata/rsa_pkcs1.pem");
    pub const RSA_PKCS8: &str = include_str!("testdata/rsa_pkcs8.pem");
    /// Another P-256 key.
    pub const OTHER_EC_SEC1: &str = include_str!("testdata/other_ec_sec1.pem");

    #[test]
    fn one_key_in_any_encoding_gives_the_same_keys() {
        let ec = SnapshotKeys::from_pem(EC_SEC1).unwrap();
        assert_eq!(ec.key_id, SnapshotKeys::from_pem(EC_PKCS8).unwrap().key_id);
        assert_eq!(ec.cipher, SnapshotKeys::from_pem(EC_PKCS8).unwrap().cipher);
        let rsa = SnapshotKeys::from_pem(RSA_PKCS1).unwrap();
        assert_eq!(rsa.mac, SnapshotKeys::from_pem(RSA_PKCS8).unwrap().mac);
        assert_ne!(ec.key_id, rsa.key_id);
        let other = SnapshotKeys::from_pem(OTHER_EC_SEC1).unwrap();
        assert_ne!(ec.key_id, other.key_id);
        assert_ne!(ec.cipher, other.cipher);
    }

    #[test]
    fn the_cipher_mac_and_id_keys_differ() {
        let keys = SnapshotKeys::from_pem(EC_SEC1).unwrap();
        assert_ne!(keys.cipher[..], keys.mac[..32]);
        assert_ne!(keys.cipher[..8], keys.key_id[..]);
    }

    #[test]
    fn unusable_keys_are_refused_with_the_reason() {
        let certificate = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        assert!(SnapshotKeys::from_pem(certificate)
            .unwrap_err()
            .contains("found a CERTIFICATE block"));
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(SnapshotKeys::from_pem(encrypted)
            .unwrap_err()
            .contains("passphrase"));
        assert!(SnapshotKeys::from_pem("hello")
            .unwrap_err()
            .contains("no \"-----BEGIN\" line"));
        let garbage = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(SnapshotKeys::from_pem(garbage)
            .unwrap_err()
            .contains("not PKCS#8"));
        let truncated = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n";
        assert!(SnapshotKeys::from_pem(truncated)
            .unwrap_err()
            .contains("no \"-----END EC PRIVATE KEY-----\" line"));
    }
}
