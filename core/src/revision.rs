//! Revisions: the global, ever-growing version of the keyspace.
//!
//! A revision is a `(main, sub)` pair: `main` is the store revision that a
//! write transaction created, `sub` numbers the changes inside it. Encoded as
//! etcd encodes it (8 big-endian bytes of `main`, `_`, 8 big-endian bytes of
//! `sub`), so byte order equals revision order and `HashKV` agrees with
//! etcd's.

/// Length of an encoded [`Revision`] in bytes.
pub const REVISION_LEN_BYTES: usize = 17;
const SEPARATOR: u8 = b'_';

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub const fn new(main: i64, sub: i64) -> Self {
        Self { main, sub }
    }

    pub fn encode(self) -> [u8; REVISION_LEN_BYTES] {
        debug_assert!(self.main >= 0 && self.sub >= 0);
        let mut out = [0u8; REVISION_LEN_BYTES];
        out[..8].copy_from_slice(&self.main.to_be_bytes());
        out[8] = SEPARATOR;
        out[9..].copy_from_slice(&self.sub.to_be_bytes());
        out
    }

    /// Decodes a revision key; `None` for anything not in that shape.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != REVISION_LEN_BYTES || bytes[8] != SEPARATOR {
            return None;
        }
        let main = i64::from_be_bytes(bytes[..8].try_into().ok()?);
        let sub = i64::from_be_bytes(bytes[9..].try_into().ok()?);
        Some(Self { main, sub })
    }

    /// The first encoded key of store revision `main`.
    pub fn start_of(main: i64) -> [u8; REVISION_LEN_BYTES] {
        Self::new(main, 0).encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_preserves_order() {
        let a = Revision::new(5, 9).encode();
        let b = Revision::new(6, 0).encode();
        assert!(a < b);
        assert_eq!(Revision::decode(&a), Some(Revision::new(5, 9)));
        assert_eq!(Revision::decode(&a[..3]), None);
    }
}
