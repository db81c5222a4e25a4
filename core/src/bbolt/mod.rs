//! bbolt, the file format of etcd's v3 backend (`member/snap/db`, and what
//! `etcdctl snapshot save` writes before its SHA-256 trailer): a B+tree of
//! pages holding nested buckets of sorted keys.
//!
//! - `layout`: the page header, the meta page, leaf and branch elements,
//!   the bucket header and the meta checksum (FNV-1a).
//! - `read`: [`Db`] over a [`PageSource`]: meta pages checked, buckets
//!   walked in key order in bounded memory, every fault a [`BboltError`]
//!   that says what and where.
//! - `write`: [`DbWriter`] into a [`PageSink`]: a valid file from sorted
//!   buckets of sorted keys, streaming.
//!
//! **Architecture invariant:** no I/O here: the shell implements the
//! source and the sink over a file.

pub mod layout;
pub mod read;
pub mod write;

pub use layout::PageKind;
pub use read::{BucketRef, Cursor, Db, Entry, EntryValue, PageSource, WalkVisit};
pub use write::{DbWriter, PageSink, Written};

/// The source or the sink failed (the shell says how).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IoError(pub String);

/// Where in the file something is: a page, or an inline bucket held in a
/// page's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageLoc {
    Page(u64),
    InlineIn(u64),
}

impl PageLoc {
    /// The page the place is on.
    pub fn page(self) -> u64 {
        match self {
            PageLoc::Page(page) | PageLoc::InlineIn(page) => page,
        }
    }
}

impl std::fmt::Display for PageLoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PageLoc::Page(page) => write!(f, "page {page}"),
            PageLoc::InlineIn(page) => write!(f, "the inline bucket on page {page}"),
        }
    }
}

/// Why a file cannot be read as bbolt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BboltError {
    #[error("not a bbolt database: {reason}")]
    NotBbolt { reason: String },
    #[error("meta page {page}: bbolt version {version}, only version 2 is known")]
    Version { page: u64, version: u32 },
    #[error(
        "meta page {page}: checksum {stored:#018x} does not match its contents ({computed:#018x})"
    )]
    MetaChecksum {
        page: u64,
        stored: u64,
        computed: u64,
    },
    #[error("no valid meta page: page 0: {page0}; page 1: {page1}")]
    NoValidMeta {
        page0: Box<BboltError>,
        page1: Box<BboltError>,
    },
    #[error("meta page {page}: {what}")]
    BadMeta { page: u64, what: String },
    #[error(
        "truncated file: the meta page counts {pages} pages of {page_size} bytes \
         ({needed_bytes} bytes), the file holds {size_bytes}"
    )]
    Truncated {
        pages: u64,
        page_size: u32,
        needed_bytes: u64,
        size_bytes: u64,
    },
    #[error("{at}: refers to page {page}, beyond the high-water mark {high_water}")]
    PageOutOfRange {
        at: PageLoc,
        page: u64,
        high_water: u64,
    },
    #[error("page {page}: its header says it is page {found}")]
    PageIdMismatch { page: u64, found: u64 },
    #[error("page {page}: expected a {expected} page, found a {found} page")]
    WrongPageType {
        page: u64,
        expected: &'static str,
        found: PageKind,
    },
    #[error("page {page}: spans {pages} pages, more than a page may (256 MiB)")]
    SpanTooLarge { page: u64, pages: u64 },
    #[error("{at}: element {index} lies outside the page")]
    ElementOutOfBounds { at: PageLoc, index: usize },
    #[error("{at}: element {index} has an empty key")]
    EmptyKey { at: PageLoc, index: usize },
    #[error("{at}: the key of element {index} is not after the key before it")]
    KeysOutOfOrder { at: PageLoc, index: usize },
    #[error("{at}: element {index} has unknown flags {flags:#x}")]
    ElementFlags {
        at: PageLoc,
        index: usize,
        flags: u32,
    },
    #[error("{at}: more than {levels} levels deep")]
    TooDeep { at: PageLoc, levels: usize },
    #[error("{at}: element {} is a bucket with a malformed value", index.map_or("?".to_string(), |i| i.to_string()))]
    BadBucket { at: PageLoc, index: Option<usize> },
    #[error("page {page}: referred to twice (again from {at})")]
    PageTwice { page: u64, at: PageLoc },
    #[error("page {page}: in use and on the freelist")]
    FreedPageInUse { page: u64 },
    #[error("page {page}: neither in use nor on the freelist")]
    PageLost { page: u64 },
    #[error("cannot read the file: {0}")]
    Source(#[from] IoError),
}

/// Why a file could not be written (`ApiMisuse`-like variants are the
/// caller's order or sizes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("cannot write the file: {0}")]
    Sink(IoError),
    #[error("key {key:02x?} is not after the key before it in its bucket")]
    KeyOrder { key: Vec<u8> },
    #[error("bbolt keys may not be empty")]
    EmptyKey,
    #[error("a key of {bytes} bytes is longer than bbolt allows (32768)")]
    KeyTooLarge { bytes: usize },
    #[error("a value of {bytes} bytes is longer than bbolt allows")]
    ValueTooLarge { bytes: usize },
    #[error("the top level of a bbolt file holds buckets only")]
    ValueInRoot,
    #[error("no bucket is open")]
    NoOpenBucket,
    #[error("a bucket is still open")]
    BucketLeftOpen,
}

#[cfg(test)]
mod tests;
