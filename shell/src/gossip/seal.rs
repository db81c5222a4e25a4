//! Authenticated encryption of every gossip message, UDP and TCP alike,
//! with a key derived from the CA key (HKDF-SHA-512, gossip's own info
//! string): AES-256-GCM with a fresh random nonce per message, the channel
//! bound in as associated data. A message that fails authentication is
//! dropped and counted; without a CA key gossip runs in the clear.
//!
//! ```text
//! sealed = version (1) | nonce (12) | ciphertext | tag (16)
//! ```

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

const INFO_GOSSIP: &[u8] = b"e2d gossip v1 aes-256-gcm key";
const VERSION: u8 = 1;
const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;
/// What sealing adds to a message.
pub const SEAL_OVERHEAD_BYTES: usize = 1 + NONCE_BYTES + TAG_BYTES;

/// Which channel a message travels on; a datagram cannot be replayed as a
/// push-pull frame or the other way round.
#[derive(Debug, Clone, Copy)]
pub enum Channel {
    Datagram,
    PushPull,
}

impl Channel {
    fn associated_data(self) -> &'static [u8] {
        match self {
            Channel::Datagram => b"e2d gossip datagram",
            Channel::PushPull => b"e2d gossip push-pull",
        }
    }
}

/// Seals and opens gossip messages; clones share the key and the count.
#[derive(Clone, Default)]
pub struct Seal {
    cipher: Option<Arc<Aes256Gcm>>,
    failures: Arc<AtomicU64>,
}

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Seal({})", if self.is_on() { "on" } else { "off" })
    }
}

impl Seal {
    /// Messages sealed with a key derived from `ca_secret` (the CA key
    /// reduced to its secret, as snapshot keys are).
    pub fn from_ca_secret(ca_secret: &[u8]) -> Self {
        let hkdf = hkdf::Hkdf::<sha2::Sha512>::new(None, ca_secret);
        let mut key = [0u8; 32];
        hkdf.expand(INFO_GOSSIP, &mut key)
            .expect("HKDF-SHA-512 yields 32 bytes");
        Self {
            cipher: Some(Arc::new(Aes256Gcm::new(&key.into()))),
            failures: Arc::default(),
        }
    }

    pub fn is_on(&self) -> bool {
        self.cipher.is_some()
    }

    /// Messages that failed authentication so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The message as it goes on the wire; `None` if it cannot be sealed
    /// (then it is not sent).
    pub fn seal<'a>(&self, channel: Channel, message: &'a [u8]) -> Option<Cow<'a, [u8]>> {
        let Some(cipher) = &self.cipher else {
            return Some(Cow::Borrowed(message));
        };
        let mut nonce = [0u8; NONCE_BYTES];
        // The OS has no randomness to give only if it is broken; a nonce
        // reused then would be worse than a message lost.
        if getrandom::fill(&mut nonce).is_err() {
            tracing::error!("no randomness for a gossip nonce; message not sent");
            return None;
        }
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: message,
                    aad: channel.associated_data(),
                },
            )
            .expect("AES-GCM seals any message under 64 GiB");
        let mut out = Vec::with_capacity(SEAL_OVERHEAD_BYTES + message.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Some(Cow::Owned(out))
    }

    /// The message inside `bytes`, or `None` (counted) if it does not
    /// authenticate.
    pub fn open<'a>(&self, channel: Channel, bytes: &'a [u8]) -> Option<Cow<'a, [u8]>> {
        let Some(cipher) = &self.cipher else {
            return Some(Cow::Borrowed(bytes));
        };
        let opened = match bytes {
            [VERSION, rest @ ..] if rest.len() >= NONCE_BYTES + TAG_BYTES => {
                let (nonce, sealed) = rest.split_at(NONCE_BYTES);
                cipher
                    .decrypt(
                        Nonce::from_slice(nonce),
                        Payload {
                            msg: sealed,
                            aad: channel.associated_data(),
                        },
                    )
                    .ok()
            }
            _ => None,
        };
        if opened.is_none() {
            let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
            if failures.is_power_of_two() {
                tracing::warn!(
                    failures,
                    "dropped gossip messages that failed authentication (a node with another CA key, or none?)"
                );
            }
        }
        opened.map(Cow::Owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_messages_open_only_with_the_same_key_and_channel() {
        let seal = Seal::from_ca_secret(b"one CA");
        let other = Seal::from_ca_secret(b"another CA");
        let sealed = seal.seal(Channel::Datagram, b"ping").unwrap().into_owned();
        assert_eq!(sealed.len(), 4 + SEAL_OVERHEAD_BYTES);
        assert_eq!(
            seal.open(Channel::Datagram, &sealed).as_deref(),
            Some(&b"ping"[..])
        );
        assert_eq!(seal.open(Channel::PushPull, &sealed), None);
        assert_eq!(other.open(Channel::Datagram, &sealed), None);
        let plain = Seal::default();
        assert_eq!(
            seal.open(
                Channel::Datagram,
                &plain.seal(Channel::Datagram, b"ping").unwrap()
            ),
            None
        );
        let mut flipped = sealed.clone();
        flipped[5] ^= 1;
        assert_eq!(seal.open(Channel::Datagram, &flipped), None);
        assert_eq!(seal.failures(), 3);
        assert_eq!(other.failures(), 1);
        assert_ne!(
            seal.seal(Channel::Datagram, b"ping").unwrap().into_owned(),
            sealed,
            "nonces repeat"
        );
    }
}
