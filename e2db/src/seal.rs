//! Sealing of `encrypted` fields: AES-256-GCM with a fresh random nonce
//! per value, bound (as associated data) to the namespace, table, field
//! and primary key, so a sealed value copied into another row or field
//! does not open. In the stored row the field's JSON value is replaced by
//! a string:
//!
//! ```text
//! "e2db-seal-v1:" base64( nonce (12) | ciphertext | tag (16) )
//! ```
//!
//! The AES key comes from the configured secret through HKDF-SHA-256 (info
//! `e2db field seal v1`); a second derivation (`e2db key id v1`) gives a
//! short key id that the table's schema records, so a wrong key is refused
//! when the table is opened rather than row by row.

use std::path::Path;
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;

use crate::error::{Error, Result};
use crate::keys::hex;

const SEALED_PREFIX: &str = "e2db-seal-v1:";
const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;
/// The shortest secret accepted for key derivation.
pub const SECRET_MIN_BYTES: usize = 16;
const INFO_SEAL: &[u8] = b"e2db field seal v1";
const INFO_KEY_ID: &[u8] = b"e2db key id v1";

/// The key that seals `encrypted` fields. Clones share it.
#[derive(Clone)]
pub struct EncryptionKey {
    cipher: Arc<Aes256Gcm>,
    id: String,
}

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EncryptionKey(id {})", self.id)
    }
}

impl EncryptionKey {
    /// A key from 32 random bytes.
    pub fn from_bytes(key: [u8; 32]) -> EncryptionKey {
        Self::derive_from(&key)
    }

    /// A key derived from a secret of at least 16 bytes (a passphrase
    /// should be long and random: derivation does not slow guessing).
    pub fn from_secret(secret: &[u8]) -> Result<EncryptionKey> {
        if secret.len() < SECRET_MIN_BYTES {
            return Err(Error::Config(format!(
                "the encryption secret has {} bytes; give at least {SECRET_MIN_BYTES} (for example 32 random bytes as 64 hex digits)",
                secret.len()
            )));
        }
        Ok(Self::derive_from(secret))
    }

    /// A key from a file: 64 hex digits are the 32 key bytes; anything else
    /// of at least 16 bytes is a secret to derive the key from.
    pub fn from_file(path: &Path) -> Result<EncryptionKey> {
        let contents = std::fs::read(path).map_err(|e| {
            Error::Config(format!(
                "cannot read the encryption key file {}: {e}",
                path.display()
            ))
        })?;
        let trimmed = contents.trim_ascii();
        if trimmed.len() == 64 && trimmed.iter().all(u8::is_ascii_hexdigit) {
            let mut key = [0u8; 32];
            for (i, byte) in key.iter_mut().enumerate() {
                let pair = std::str::from_utf8(&trimmed[i * 2..i * 2 + 2]).unwrap_or("");
                *byte = u8::from_str_radix(pair, 16).unwrap_or(0);
            }
            return Ok(Self::from_bytes(key));
        }
        Self::from_secret(&contents).map_err(|_| {
            Error::Config(format!(
                "the encryption key file {} is too short: put 64 hex digits (32 random bytes) or a secret of at least {SECRET_MIN_BYTES} bytes in it",
                path.display()
            ))
        })
    }

    fn derive_from(secret: &[u8]) -> EncryptionKey {
        let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"e2db"), secret);
        let mut key = [0u8; 32];
        hkdf.expand(INFO_SEAL, &mut key)
            .expect("HKDF-SHA-256 yields 32 bytes");
        let mut id = [0u8; 8];
        hkdf.expand(INFO_KEY_ID, &mut id)
            .expect("HKDF-SHA-256 yields 8 bytes");
        EncryptionKey {
            cipher: Arc::new(Aes256Gcm::new(&key.into())),
            id: hex(&id),
        }
    }

    /// A short public name of the key, recorded in the table's schema.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `plain` sealed for the place `binding` names.
    pub fn seal(&self, binding: &[u8], plain: &[u8]) -> Result<String, String> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|e| format!("no randomness for a nonce: {e}"))?;
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: binding,
                },
            )
            .map_err(|_| "the value is too large to seal".to_string())?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(format!(
            "{SEALED_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ))
    }

    /// The plaintext of a sealed value, or why it does not open.
    pub fn open(&self, binding: &[u8], sealed: &str) -> Result<Vec<u8>, String> {
        let text = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or("the value is not sealed (no e2db-seal-v1 prefix)")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| "the sealed value is not base64")?;
        if bytes.len() < NONCE_BYTES + TAG_BYTES {
            return Err("the sealed value is cut short".into());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: binding,
                },
            )
            .map_err(|_| {
                "the sealed value does not authenticate: another key, another row, or changed bytes"
                    .to_string()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_refusals() {
        let key = EncryptionKey::from_bytes([7; 32]);
        let sealed = key.seal(b"ns/t/f/1", b"\"secret\"").unwrap();
        assert!(sealed.starts_with(SEALED_PREFIX));
        assert!(!sealed.contains("secret"));
        assert_eq!(key.open(b"ns/t/f/1", &sealed).unwrap(), b"\"secret\"");
        assert!(key.open(b"ns/t/f/2", &sealed).is_err());
        let other = EncryptionKey::from_bytes([8; 32]);
        assert_ne!(key.id(), other.id());
        assert!(other.open(b"ns/t/f/1", &sealed).is_err());
        assert!(key.open(b"ns/t/f/1", "plain").is_err());
        assert!(key.open(b"ns/t/f/1", "e2db-seal-v1:AAAA").is_err());
        assert!(key.open(b"ns/t/f/1", "e2db-seal-v1:!!").is_err());
    }

    #[test]
    fn key_sources() {
        assert!(EncryptionKey::from_secret(b"short").is_err());
        let dir = std::env::temp_dir().join(format!("e2db-key-{}", std::process::id()));
        std::fs::write(&dir, format!("{}\n", "ab".repeat(32))).unwrap();
        let from_file = EncryptionKey::from_file(&dir).unwrap();
        assert_eq!(from_file.id(), EncryptionKey::from_bytes([0xab; 32]).id());
        std::fs::write(&dir, "tiny").unwrap();
        assert!(EncryptionKey::from_file(&dir).is_err());
        std::fs::remove_file(&dir).unwrap();
        assert!(EncryptionKey::from_file(&dir).is_err());
    }
}
