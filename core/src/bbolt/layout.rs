//! bbolt's on-disk structures, as etcd's `member/snap/db` holds them: the
//! page header, the meta page, leaf and branch elements, the bucket
//! header, and the FNV-1a checksum of the meta page. Little-endian, as
//! bbolt writes them on the machines etcd runs on.
//!
//! A page starts with a 16-byte header (`id u64, flags u16, count u16,
//! overflow u32`); `overflow` more pages follow it when its contents do
//! not fit one page. A leaf or branch page holds `count` 16-byte elements
//! after the header, then the keys (and values) they point to; an
//! element's `pos` counts from the element itself.

use crate::fnv1a::fnv1a_64;

/// The magic number of a bbolt meta page.
pub const MAGIC: u32 = 0xED0C_DAED;
/// The only data file version bbolt writes.
pub const VERSION: u32 = 2;
/// The page size e2d writes, bbolt's default on the machines etcd runs on.
pub const PAGE_SIZE_BYTES: u32 = 4096;
/// The smallest and largest page sizes a file may declare (bbolt takes the
/// OS page size, which lies between).
pub const PAGE_SIZE_MIN_BYTES: u32 = 512;
pub const PAGE_SIZE_MAX_BYTES: u32 = 1 << 20;

pub const PAGE_HEADER_BYTES: usize = 16;
pub const LEAF_ELEMENT_BYTES: usize = 16;
pub const BRANCH_ELEMENT_BYTES: usize = 16;
/// A sub-bucket's value starts with its root page id and sequence.
pub const BUCKET_HEADER_BYTES: usize = 16;
/// The meta struct after the page header, up to and with its checksum.
pub const META_BYTES: usize = 64;
/// The checksum covers the meta struct before the checksum field.
const META_CHECKSUMMED_BYTES: usize = 56;

pub const BRANCH_PAGE_FLAG: u16 = 0x01;
pub const LEAF_PAGE_FLAG: u16 = 0x02;
pub const META_PAGE_FLAG: u16 = 0x04;
pub const FREELIST_PAGE_FLAG: u16 = 0x10;

/// A leaf element whose value is a sub-bucket.
pub const BUCKET_LEAF_FLAG: u32 = 0x01;

/// The freelist page id of a file that keeps no freelist.
pub const NO_FREELIST: u64 = u64::MAX;
/// A freelist page whose `count` is this holds its count in its first id.
pub const FREELIST_COUNT_IN_FIRST_ID: u16 = 0xFFFF;

/// bbolt's largest key and value.
pub const KEY_BYTES_MAX: usize = 32768;
pub const VALUE_BYTES_MAX: usize = (1 << 31) - 2;

/// The first page id that is neither a meta page.
pub const FIRST_DATA_PAGE: u64 = 2;

/// What a page is, from its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageKind {
    Branch,
    Leaf,
    Meta,
    Freelist,
    Unknown(u16),
}

impl PageKind {
    pub fn of(flags: u16) -> Self {
        match flags {
            BRANCH_PAGE_FLAG => PageKind::Branch,
            LEAF_PAGE_FLAG => PageKind::Leaf,
            META_PAGE_FLAG => PageKind::Meta,
            FREELIST_PAGE_FLAG => PageKind::Freelist,
            other => PageKind::Unknown(other),
        }
    }
}

impl std::fmt::Display for PageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PageKind::Branch => f.write_str("branch"),
            PageKind::Leaf => f.write_str("leaf"),
            PageKind::Meta => f.write_str("meta"),
            PageKind::Freelist => f.write_str("freelist"),
            PageKind::Unknown(flags) => write!(f, "unknown (flags {flags:#06x})"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageHeader {
    pub id: u64,
    pub flags: u16,
    pub count: u16,
    pub overflow: u32,
}

impl PageHeader {
    pub fn decode(bytes: &[u8; PAGE_HEADER_BYTES]) -> Self {
        PageHeader {
            id: u64_at(bytes, 0),
            flags: u16_at(bytes, 8),
            count: u16_at(bytes, 10),
            overflow: u32_at(bytes, 12),
        }
    }

    pub fn encode(&self) -> [u8; PAGE_HEADER_BYTES] {
        let mut out = [0u8; PAGE_HEADER_BYTES];
        out[..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..10].copy_from_slice(&self.flags.to_le_bytes());
        out[10..12].copy_from_slice(&self.count.to_le_bytes());
        out[12..].copy_from_slice(&self.overflow.to_le_bytes());
        out
    }

    pub fn kind(&self) -> PageKind {
        PageKind::of(self.flags)
    }
}

/// A bucket's root page (0 when the bucket is inline, its page following
/// the header in the value) and its sequence counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BucketHeader {
    pub root: u64,
    pub sequence: u64,
}

impl BucketHeader {
    pub fn decode(bytes: &[u8; BUCKET_HEADER_BYTES]) -> Self {
        BucketHeader {
            root: u64_at(bytes, 0),
            sequence: u64_at(bytes, 8),
        }
    }

    pub fn encode(&self) -> [u8; BUCKET_HEADER_BYTES] {
        let mut out = [0u8; BUCKET_HEADER_BYTES];
        out[..8].copy_from_slice(&self.root.to_le_bytes());
        out[8..].copy_from_slice(&self.sequence.to_le_bytes());
        out
    }
}

/// The meta struct of page 0 or 1: where the tree starts and how far the
/// file reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub magic: u32,
    pub version: u32,
    pub page_size: u32,
    pub flags: u32,
    /// The root bucket, whose keys are the top-level buckets' names.
    pub root: BucketHeader,
    /// The freelist's page, or [`NO_FREELIST`].
    pub freelist: u64,
    /// The high-water mark: the first page id past the end of the data.
    pub high_water: u64,
    pub txid: u64,
    pub checksum: u64,
}

impl Meta {
    /// A meta struct for a file of `high_water` pages, its checksum set.
    pub fn new(root: u64, freelist: u64, high_water: u64, txid: u64) -> Self {
        let mut meta = Meta {
            magic: MAGIC,
            version: VERSION,
            page_size: PAGE_SIZE_BYTES,
            flags: 0,
            root: BucketHeader { root, sequence: 0 },
            freelist,
            high_water,
            txid,
            checksum: 0,
        };
        meta.checksum = meta.computed_checksum();
        meta
    }

    pub fn decode(bytes: &[u8; META_BYTES]) -> Self {
        Meta {
            magic: u32_at(bytes, 0),
            version: u32_at(bytes, 4),
            page_size: u32_at(bytes, 8),
            flags: u32_at(bytes, 12),
            root: BucketHeader {
                root: u64_at(bytes, 16),
                sequence: u64_at(bytes, 24),
            },
            freelist: u64_at(bytes, 32),
            high_water: u64_at(bytes, 40),
            txid: u64_at(bytes, 48),
            checksum: u64_at(bytes, 56),
        }
    }

    pub fn encode(&self) -> [u8; META_BYTES] {
        let mut out = [0u8; META_BYTES];
        out[0..4].copy_from_slice(&self.magic.to_le_bytes());
        out[4..8].copy_from_slice(&self.version.to_le_bytes());
        out[8..12].copy_from_slice(&self.page_size.to_le_bytes());
        out[12..16].copy_from_slice(&self.flags.to_le_bytes());
        out[16..32].copy_from_slice(&self.root.encode());
        out[32..40].copy_from_slice(&self.freelist.to_le_bytes());
        out[40..48].copy_from_slice(&self.high_water.to_le_bytes());
        out[48..56].copy_from_slice(&self.txid.to_le_bytes());
        out[56..64].copy_from_slice(&self.checksum.to_le_bytes());
        out
    }

    /// FNV-1a (64 bits) of the struct before its checksum field, as bbolt
    /// computes it.
    pub fn computed_checksum(&self) -> u64 {
        fnv1a_64(self.encode()[..META_CHECKSUMMED_BYTES].iter().copied())
    }
}

/// A leaf element: flags, where its key starts (from the element), and the
/// key's and value's lengths; the value follows the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafElement {
    pub flags: u32,
    pub pos: u32,
    pub key_bytes: u32,
    pub value_bytes: u32,
}

impl LeafElement {
    pub fn decode(bytes: &[u8; LEAF_ELEMENT_BYTES]) -> Self {
        LeafElement {
            flags: u32_at(bytes, 0),
            pos: u32_at(bytes, 4),
            key_bytes: u32_at(bytes, 8),
            value_bytes: u32_at(bytes, 12),
        }
    }

    pub fn encode(&self) -> [u8; LEAF_ELEMENT_BYTES] {
        let mut out = [0u8; LEAF_ELEMENT_BYTES];
        out[0..4].copy_from_slice(&self.flags.to_le_bytes());
        out[4..8].copy_from_slice(&self.pos.to_le_bytes());
        out[8..12].copy_from_slice(&self.key_bytes.to_le_bytes());
        out[12..16].copy_from_slice(&self.value_bytes.to_le_bytes());
        out
    }
}

/// A branch element: where its key starts (from the element), the key's
/// length, and the child page whose first key it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BranchElement {
    pub pos: u32,
    pub key_bytes: u32,
    pub child: u64,
}

impl BranchElement {
    pub fn decode(bytes: &[u8; BRANCH_ELEMENT_BYTES]) -> Self {
        BranchElement {
            pos: u32_at(bytes, 0),
            key_bytes: u32_at(bytes, 4),
            child: u64_at(bytes, 8),
        }
    }

    pub fn encode(&self) -> [u8; BRANCH_ELEMENT_BYTES] {
        let mut out = [0u8; BRANCH_ELEMENT_BYTES];
        out[0..4].copy_from_slice(&self.pos.to_le_bytes());
        out[4..8].copy_from_slice(&self.key_bytes.to_le_bytes());
        out[8..16].copy_from_slice(&self.child.to_le_bytes());
        out
    }
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// A fixed-size array of `bytes` at `at`, if it lies inside.
pub fn array_at<const N: usize>(bytes: &[u8], at: usize) -> Option<&[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structures_round_trip() {
        let meta = Meta::new(5, 2, 9, 4);
        assert_eq!(Meta::decode(&meta.encode()), meta);
        assert_eq!(meta.checksum, meta.computed_checksum());
        let header = PageHeader {
            id: 7,
            flags: LEAF_PAGE_FLAG,
            count: 3,
            overflow: 1,
        };
        assert_eq!(PageHeader::decode(&header.encode()), header);
        assert_eq!(header.kind(), PageKind::Leaf);
        let leaf = LeafElement {
            flags: BUCKET_LEAF_FLAG,
            pos: 48,
            key_bytes: 3,
            value_bytes: 16,
        };
        assert_eq!(LeafElement::decode(&leaf.encode()), leaf);
        let branch = BranchElement {
            pos: 32,
            key_bytes: 2,
            child: 11,
        };
        assert_eq!(BranchElement::decode(&branch.encode()), branch);
    }
}
