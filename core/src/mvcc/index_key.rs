//! A key as the key index holds it: bytes kept in the map's node when
//! they fit, in their own allocation when they do not.
//!
//! A lookup compares the key sought with a handful of keys in each node
//! it passes. Boxed, each comparison first follows a pointer to memory
//! the cache seldom holds; a key of [`INLINE_BYTES_MAX`] bytes or fewer
//! sits beside its neighbours in the node, so the comparison reads memory
//! the lookup has already touched, and the key costs no allocation.

use std::borrow::Borrow;
use std::cmp::Ordering;

/// The longest key kept in the node; with its length byte and the tag it
/// fills the 24 bytes the boxed form takes with its tag.
pub const INLINE_BYTES_MAX: usize = 22;

#[derive(Clone)]
pub enum IndexKey {
    Inline {
        len: u8,
        bytes: [u8; INLINE_BYTES_MAX],
    },
    Boxed(Box<[u8]>),
}

const _: () = assert!(std::mem::size_of::<IndexKey>() == 24);

impl IndexKey {
    pub fn new(key: &[u8]) -> Self {
        if key.len() <= INLINE_BYTES_MAX {
            let mut bytes = [0; INLINE_BYTES_MAX];
            bytes[..key.len()].copy_from_slice(key);
            IndexKey::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            IndexKey::Boxed(key.into())
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            IndexKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            IndexKey::Boxed(bytes) => bytes,
        }
    }
}

// Equality and order are the bytes', as `Borrow<[u8]>` requires: the map
// is searched with plain byte slices.
impl PartialEq for IndexKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for IndexKey {}

impl PartialOrd for IndexKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IndexKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl Borrow<[u8]> for IndexKey {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_bytes().escape_ascii().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_on_both_sides_of_the_inline_limit_keep_their_bytes() {
        for len in [
            0,
            1,
            INLINE_BYTES_MAX - 1,
            INLINE_BYTES_MAX,
            INLINE_BYTES_MAX + 1,
            300,
        ] {
            let key: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let held = IndexKey::new(&key);
            assert_eq!(held.as_bytes(), &key[..]);
            assert_eq!(
                matches!(held, IndexKey::Inline { .. }),
                len <= INLINE_BYTES_MAX
            );
        }
    }

    proptest! {
        /// Inline and boxed keys order as their bytes do, zero bytes and
        /// prefixes included.
        #[test]
        fn order_is_the_bytes_order(
            a in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), any::<u8>()], 0..30),
            b in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), any::<u8>()], 0..30),
        ) {
            let (ka, kb) = (IndexKey::new(&a), IndexKey::new(&b));
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
            prop_assert_eq!(ka == kb, a == b);
        }
    }
}
