//! Writing a bbolt file through a [`PageSink`], streaming: keys come in
//! order, bucket by bucket; each leaf page is written as soon as it is
//! full, and of the levels above it only the (first key, page id) pairs of
//! the branch page being filled are kept. Memory stays at a few pages per
//! open bucket, whatever the file's size.
//!
//! Layout: pages 0 and 1 are the meta pages and page 2 the (empty)
//! freelist, written last; data pages follow from page 3 in the order
//! they fill. A bucket small enough (a leaf of at most a quarter page with
//! no sub-bucket) is written inline in its parent's value, as bbolt does.

use super::layout::{
    BranchElement, BucketHeader, LeafElement, Meta, PageHeader, BRANCH_ELEMENT_BYTES,
    BRANCH_PAGE_FLAG, BUCKET_LEAF_FLAG, FIRST_DATA_PAGE, FREELIST_PAGE_FLAG, KEY_BYTES_MAX,
    LEAF_ELEMENT_BYTES, LEAF_PAGE_FLAG, META_PAGE_FLAG, PAGE_HEADER_BYTES, PAGE_SIZE_BYTES,
    VALUE_BYTES_MAX,
};
use super::{IoError, WriteError};

/// Where the writer puts the file's bytes.
pub trait PageSink {
    /// Writes `bytes` at `offset`. Data pages come in increasing offsets;
    /// the freelist and meta pages (the first three pages) come last.
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<(), IoError>;
}

impl PageSink for Vec<u8> {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<(), IoError> {
        let start = usize::try_from(offset).map_err(|_| IoError("offset too large".into()))?;
        let end = start + bytes.len();
        if self.len() < end {
            self.resize(end, 0);
        }
        self[start..end].copy_from_slice(bytes);
        Ok(())
    }
}

/// The page the (empty) freelist is written to.
const FREELIST_PAGE: u64 = FIRST_DATA_PAGE;
/// The transaction ids of the two meta pages: page 0 holds the newer.
const TXID_NEWER: u64 = 2;
const TXID_OLDER: u64 = 1;

/// What the writer wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Pages in the file, meta and freelist pages included.
    pub pages: u64,
    pub size_bytes: u64,
}

/// One element waiting on a page being filled: a leaf's key, flags and
/// value, or a branch's key and child page.
#[derive(Debug)]
struct Item {
    key: Vec<u8>,
    flags: u32,
    value: Vec<u8>,
    child: u64,
}

/// A leaf or branch page being filled.
#[derive(Debug)]
struct Node {
    is_leaf: bool,
    items: Vec<Item>,
    /// Header, elements, keys and values.
    size_bytes: usize,
    holds_bucket: bool,
}

impl Node {
    fn new(is_leaf: bool) -> Self {
        Node {
            is_leaf,
            items: Vec::new(),
            size_bytes: PAGE_HEADER_BYTES,
            holds_bucket: false,
        }
    }

    fn item_bytes(&self, key: &[u8], value: &[u8]) -> usize {
        let element = if self.is_leaf {
            LEAF_ELEMENT_BYTES
        } else {
            BRANCH_ELEMENT_BYTES
        };
        element + key.len() + value.len()
    }

    /// Whether `key` and `value` would take the node past one page (a node
    /// with no item takes anything: a large value overflows).
    fn is_full_for(&self, key: &[u8], value: &[u8]) -> bool {
        !self.items.is_empty()
            && self.size_bytes + self.item_bytes(key, value) > PAGE_SIZE_BYTES as usize
    }

    fn push(&mut self, item: Item) {
        self.size_bytes += self.item_bytes(&item.key, &item.value);
        self.holds_bucket |= item.flags & BUCKET_LEAF_FLAG != 0;
        self.items.push(item);
    }

    /// The node as a page: header, elements, then keys and values, padded
    /// to `pad_to_bytes`.
    fn encode(&self, id: u64, overflow: u32, pad_to_bytes: usize) -> Vec<u8> {
        assert!(
            self.items.len() < usize::from(u16::MAX),
            "a page holds fewer than 65535 elements"
        );
        let mut bytes = Vec::with_capacity(pad_to_bytes.max(self.size_bytes));
        let header = PageHeader {
            id,
            flags: if self.is_leaf {
                LEAF_PAGE_FLAG
            } else {
                BRANCH_PAGE_FLAG
            },
            count: self.items.len() as u16,
            overflow,
        };
        bytes.extend_from_slice(&header.encode());
        let elements_bytes = self.items.len() * LEAF_ELEMENT_BYTES;
        let mut data_at = PAGE_HEADER_BYTES + elements_bytes;
        for (i, item) in self.items.iter().enumerate() {
            let element_at = PAGE_HEADER_BYTES + i * LEAF_ELEMENT_BYTES;
            let pos = (data_at - element_at) as u32;
            if self.is_leaf {
                let element = LeafElement {
                    flags: item.flags,
                    pos,
                    key_bytes: item.key.len() as u32,
                    value_bytes: item.value.len() as u32,
                };
                bytes.extend_from_slice(&element.encode());
            } else {
                let element = BranchElement {
                    pos,
                    key_bytes: item.key.len() as u32,
                    child: item.child,
                };
                bytes.extend_from_slice(&element.encode());
            }
            data_at += item.key.len() + item.value.len();
        }
        for item in &self.items {
            bytes.extend_from_slice(&item.key);
            bytes.extend_from_slice(&item.value);
        }
        debug_assert_eq!(bytes.len(), self.size_bytes);
        bytes.resize(pad_to_bytes.max(bytes.len()), 0);
        bytes
    }
}

/// A bucket being written: the last key, its leaf being filled and the
/// branch pages being filled above it (`branches[0]` points at leaves).
#[derive(Debug)]
struct BucketBuilder {
    name: Vec<u8>,
    last_key: Option<Vec<u8>>,
    leaf: Node,
    branches: Vec<Node>,
}

impl BucketBuilder {
    fn new(name: Vec<u8>) -> Self {
        BucketBuilder {
            name,
            last_key: None,
            leaf: Node::new(true),
            branches: Vec::new(),
        }
    }

    /// Checks `key` may come next and makes it the last key.
    fn take_key(&mut self, key: &[u8]) -> Result<(), WriteError> {
        if key.is_empty() {
            return Err(WriteError::EmptyKey);
        }
        if key.len() > KEY_BYTES_MAX {
            return Err(WriteError::KeyTooLarge { bytes: key.len() });
        }
        if self.last_key.as_deref().is_some_and(|last| key <= last) {
            return Err(WriteError::KeyOrder { key: key.to_vec() });
        }
        self.last_key = Some(key.to_vec());
        Ok(())
    }
}

/// Builds a bbolt file from sorted buckets of sorted keys. Call
/// [`DbWriter::begin_bucket`], [`DbWriter::put`] and
/// [`DbWriter::end_bucket`] in key order (the top level holds buckets
/// only), then [`DbWriter::finish`].
pub struct DbWriter<S> {
    sink: S,
    next_page: u64,
    /// The root bucket, then the buckets open inside it.
    buckets: Vec<BucketBuilder>,
}

impl<S: PageSink> DbWriter<S> {
    pub fn new(sink: S) -> Self {
        DbWriter {
            sink,
            next_page: FREELIST_PAGE + 1,
            buckets: vec![BucketBuilder::new(Vec::new())],
        }
    }

    /// Opens the bucket `name` inside the bucket open now; its name takes
    /// its place among that bucket's keys.
    pub fn begin_bucket(&mut self, name: &[u8]) -> Result<(), WriteError> {
        self.open_bucket().take_key(name)?;
        self.buckets.push(BucketBuilder::new(name.to_vec()));
        Ok(())
    }

    /// Puts `key` (after the open bucket's keys so far) with `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), WriteError> {
        if self.buckets.len() == 1 {
            return Err(WriteError::ValueInRoot);
        }
        if value.len() > VALUE_BYTES_MAX {
            return Err(WriteError::ValueTooLarge { bytes: value.len() });
        }
        self.open_bucket().take_key(key)?;
        self.add_to_leaf(Item {
            key: key.to_vec(),
            flags: 0,
            value: value.to_vec(),
            child: 0,
        })
    }

    /// Closes the bucket open now: writes what is left of it and enters it
    /// in its parent.
    pub fn end_bucket(&mut self) -> Result<(), WriteError> {
        if self.buckets.len() == 1 {
            return Err(WriteError::NoOpenBucket);
        }
        let (name, value) = self.close_open_bucket(true)?;
        self.add_to_leaf(Item {
            key: name,
            flags: BUCKET_LEAF_FLAG,
            value,
            child: 0,
        })
    }

    /// Writes the root bucket, the freelist and the meta pages; returns
    /// the sink and what was written.
    pub fn finish(mut self) -> Result<(S, Written), WriteError> {
        if self.buckets.len() != 1 {
            return Err(WriteError::BucketLeftOpen);
        }
        let (_, root_value) = self.close_open_bucket(false)?;
        let root = BucketHeader::decode(root_value[..].try_into().expect("a bucket header")).root;
        let page_size = u64::from(PAGE_SIZE_BYTES);
        let freelist = PageHeader {
            id: FREELIST_PAGE,
            flags: FREELIST_PAGE_FLAG,
            count: 0,
            overflow: 0,
        };
        self.write_page_bytes(FREELIST_PAGE, pad_page(freelist.encode().to_vec()))?;
        let high_water = self.next_page;
        for (page, txid) in [(0, TXID_NEWER), (1, TXID_OLDER)] {
            let header = PageHeader {
                id: page,
                flags: META_PAGE_FLAG,
                count: 0,
                overflow: 0,
            };
            let mut bytes = header.encode().to_vec();
            bytes.extend_from_slice(&Meta::new(root, FREELIST_PAGE, high_water, txid).encode());
            self.write_page_bytes(page, pad_page(bytes))?;
        }
        let written = Written {
            pages: high_water,
            size_bytes: high_water * page_size,
        };
        Ok((self.sink, written))
    }

    fn open_bucket(&mut self) -> &mut BucketBuilder {
        self.buckets
            .last_mut()
            .expect("the root bucket is always open")
    }

    /// Adds an element to the open bucket's leaf, writing the leaf first
    /// when the element would not fit.
    fn add_to_leaf(&mut self, item: Item) -> Result<(), WriteError> {
        let depth = self.buckets.len() - 1;
        if self.buckets[depth].leaf.is_full_for(&item.key, &item.value) {
            let full = std::mem::replace(&mut self.buckets[depth].leaf, Node::new(true));
            self.write_node(depth, full, 0)?;
        }
        self.buckets[depth].leaf.push(item);
        Ok(())
    }

    /// Writes `node` of bucket `depth` and enters it in the branch level
    /// `level` above it (writing that branch page first when full).
    fn write_node(&mut self, depth: usize, node: Node, level: usize) -> Result<(), WriteError> {
        let first_key = node
            .items
            .first()
            .expect("nodes written hold items")
            .key
            .clone();
        let page = self.write_page(&node)?;
        self.enter_in_branch(depth, level, first_key, page)
    }

    fn enter_in_branch(
        &mut self,
        depth: usize,
        level: usize,
        key: Vec<u8>,
        child: u64,
    ) -> Result<(), WriteError> {
        let branches = &mut self.buckets[depth].branches;
        if branches.len() == level {
            branches.push(Node::new(false));
        }
        if branches[level].is_full_for(&key, &[]) {
            let full = std::mem::replace(&mut branches[level], Node::new(false));
            self.write_node(depth, full, level + 1)?;
        }
        self.buckets[depth].branches[level].push(Item {
            key,
            flags: 0,
            value: Vec::new(),
            child,
        });
        Ok(())
    }

    /// Writes what is left of the open bucket and closes it; returns its
    /// name and its value in its parent: inline when `may_inline` and it
    /// is small, else its header.
    fn close_open_bucket(&mut self, may_inline: bool) -> Result<(Vec<u8>, Vec<u8>), WriteError> {
        let depth = self.buckets.len() - 1;
        let bucket = &mut self.buckets[depth];
        let leaf = std::mem::replace(&mut bucket.leaf, Node::new(true));
        let inline = may_inline
            && bucket.branches.is_empty()
            && !leaf.holds_bucket
            && leaf.size_bytes <= PAGE_SIZE_BYTES as usize / 4;
        let value = if inline {
            let mut value = BucketHeader::default().encode().to_vec();
            value.extend_from_slice(&leaf.encode(0, 0, 0));
            value
        } else {
            let root = if bucket.branches.is_empty() {
                self.write_page(&leaf)?
            } else {
                self.write_node(depth, leaf, 0)?;
                self.collapse_branches(depth)?
            };
            BucketHeader { root, sequence: 0 }.encode().to_vec()
        };
        let bucket = self.buckets.pop().expect("the bucket closed");
        Ok((bucket.name, value))
    }

    /// Writes the branch pages being filled, bottom up, until one page is
    /// the root; returns it.
    fn collapse_branches(&mut self, depth: usize) -> Result<u64, WriteError> {
        let mut level = 0;
        loop {
            let branches = &mut self.buckets[depth].branches;
            let top = level + 1 == branches.len();
            if top && branches[level].items.len() == 1 {
                return Ok(branches[level].items[0].child);
            }
            let node = std::mem::replace(&mut branches[level], Node::new(false));
            self.write_node(depth, node, level + 1)?;
            level += 1;
        }
    }

    /// Writes `node` on the next free pages; returns its page id.
    fn write_page(&mut self, node: &Node) -> Result<u64, WriteError> {
        let page_size = PAGE_SIZE_BYTES as usize;
        let span_pages = node.size_bytes.div_ceil(page_size).max(1);
        let id = self.next_page;
        let overflow = u32::try_from(span_pages - 1).map_err(|_| WriteError::ValueTooLarge {
            bytes: node.size_bytes,
        })?;
        let bytes = node.encode(id, overflow, span_pages * page_size);
        self.next_page += span_pages as u64;
        self.write_page_bytes(id, bytes)?;
        Ok(id)
    }

    fn write_page_bytes(&mut self, id: u64, bytes: Vec<u8>) -> Result<(), WriteError> {
        debug_assert_eq!(bytes.len() % PAGE_SIZE_BYTES as usize, 0);
        self.sink
            .write_at(id * u64::from(PAGE_SIZE_BYTES), &bytes)
            .map_err(WriteError::Sink)
    }
}

fn pad_page(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.resize(PAGE_SIZE_BYTES as usize, 0);
    bytes
}
