//! Reading a bbolt file through a [`PageSource`]: the meta pages are
//! checked and the newer valid one chosen, as bbolt does; a [`Cursor`]
//! walks one bucket's keys in order, holding only the pages on its path
//! from the root; [`Db::walk`] visits every bucket and checks that each
//! page is used once, as `bbolt check` does.
//!
//! Nothing in the file is trusted: every offset, length, page id and type
//! is checked before use, and every fault is a [`BboltError`] that says
//! what is wrong and where.

use super::layout::{
    array_at, BranchElement, BucketHeader, LeafElement, Meta, PageHeader, PageKind,
    BRANCH_ELEMENT_BYTES, BUCKET_HEADER_BYTES, BUCKET_LEAF_FLAG, FIRST_DATA_PAGE,
    FREELIST_COUNT_IN_FIRST_ID, LEAF_ELEMENT_BYTES, MAGIC, META_BYTES, META_PAGE_FLAG, NO_FREELIST,
    PAGE_HEADER_BYTES, PAGE_SIZE_BYTES, PAGE_SIZE_MAX_BYTES, PAGE_SIZE_MIN_BYTES, VERSION,
};
use super::{BboltError, IoError, PageLoc};

/// Levels of one bucket's tree a cursor descends at most; bbolt's trees
/// for terabytes are a handful of levels deep.
pub const TREE_DEPTH_MAX: usize = 32;
/// Buckets nested in buckets that [`Db::walk`] follows at most.
pub const BUCKET_NESTING_MAX: usize = 16;
/// The most bytes one page with its overflow pages may span: a leaf holds
/// at most a few values, and e2d's largest record is 64 MiB.
pub const PAGE_SPAN_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// Where the reader gets the file's bytes.
pub trait PageSource {
    /// The bytes of the database (without anything appended to it).
    fn size_bytes(&self) -> u64;
    /// Fills `buf` with the bytes at `offset`; the caller stays inside
    /// [`PageSource::size_bytes`].
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError>;
}

impl PageSource for [u8] {
    fn size_bytes(&self) -> u64 {
        self.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let range = usize::try_from(offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(buf.len())?))
            .filter(|range| range.end <= self.len())
            .ok_or_else(|| IoError(format!("read past the end at byte {offset}")))?;
        buf.copy_from_slice(&self[range]);
        Ok(())
    }
}

impl PageSource for Vec<u8> {
    fn size_bytes(&self) -> u64 {
        self.as_slice().size_bytes()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.as_slice().read_at(offset, buf)
    }
}

impl<S: PageSource + ?Sized> PageSource for &S {
    fn size_bytes(&self) -> u64 {
        (**self).size_bytes()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        (**self).read_at(offset, buf)
    }
}

/// A bucket to read: its root page, or its inline page (a bucket small
/// enough to live in its parent's value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketRef {
    Pages { root: u64 },
    Inline { page: Vec<u8>, holder: PageLoc },
}

/// A key and what it holds: a value, or a sub-bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Vec<u8>,
    pub value: EntryValue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryValue {
    Data(Vec<u8>),
    Bucket(BucketRef),
}

/// Called by [`Db::walk`] with each entry and the path of buckets it lies
/// in; an error stops the walk.
pub type WalkVisit<'a, E> = dyn FnMut(&[Vec<u8>], &Entry) -> Result<(), E> + 'a;

/// An open bbolt file: its source and the meta page in force.
pub struct Db<S> {
    source: S,
    meta: Meta,
}

impl<S: PageSource> Db<S> {
    /// Checks the meta pages and picks the valid one with the higher
    /// transaction id, as bbolt does; checks that the file holds every page
    /// up to its high-water mark.
    pub fn open(source: S) -> Result<Self, BboltError> {
        let size_bytes = source.size_bytes();
        let meta0 = read_meta(&source, 0, 0);
        let page_size = meta0.as_ref().map_or(PAGE_SIZE_BYTES, |m| m.page_size);
        let meta1 = read_meta(&source, 1, u64::from(page_size));
        let (page, meta) = match (meta0, meta1) {
            (Ok(a), Ok(b)) => {
                if b.txid > a.txid {
                    (1, b)
                } else {
                    (0, a)
                }
            }
            (Ok(a), Err(_)) => (0, a),
            (Err(_), Ok(b)) => (1, b),
            (Err(e @ BboltError::NotBbolt { .. }), Err(_)) => return Err(e),
            (Err(page0), Err(page1)) => {
                return Err(BboltError::NoValidMeta {
                    page0: Box::new(page0),
                    page1: Box::new(page1),
                })
            }
        };
        let bad = |what: String| BboltError::BadMeta { page, what };
        if meta.high_water <= FIRST_DATA_PAGE {
            return Err(bad(format!(
                "high-water mark {} leaves no data page",
                meta.high_water
            )));
        }
        if meta.root.root < FIRST_DATA_PAGE || meta.root.root >= meta.high_water {
            return Err(bad(format!(
                "root page {} lies outside the data pages 2..{}",
                meta.root.root, meta.high_water
            )));
        }
        if meta.freelist != NO_FREELIST
            && (meta.freelist < FIRST_DATA_PAGE || meta.freelist >= meta.high_water)
        {
            return Err(bad(format!(
                "freelist page {} lies outside the data pages 2..{}",
                meta.freelist, meta.high_water
            )));
        }
        let needed_bytes = meta
            .high_water
            .checked_mul(u64::from(meta.page_size))
            .ok_or_else(|| bad(format!("high-water mark {} is absurd", meta.high_water)))?;
        if needed_bytes > size_bytes {
            return Err(BboltError::Truncated {
                pages: meta.high_water,
                page_size: meta.page_size,
                needed_bytes,
                size_bytes,
            });
        }
        Ok(Db { source, meta })
    }

    /// The meta page in force.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    pub fn page_size(&self) -> u32 {
        self.meta.page_size
    }

    /// The root bucket, whose keys are the top-level buckets.
    pub fn root(&self) -> BucketRef {
        BucketRef::Pages {
            root: self.meta.root.root,
        }
    }

    pub fn into_source(self) -> S {
        self.source
    }

    /// A cursor over `bucket`'s keys, in order.
    pub fn cursor(&self, bucket: &BucketRef) -> Cursor<'_, S> {
        Cursor {
            db: self,
            bucket: bucket.clone(),
            stack: Vec::new(),
            last_key: None,
            started: false,
            pages_loaded: 0,
        }
    }

    /// The sub-bucket `name` of `parent`; `Ok(None)` when there is none
    /// (or `name` holds a value).
    pub fn bucket(&self, parent: &BucketRef, name: &[u8]) -> Result<Option<BucketRef>, BboltError> {
        let mut cursor = self.cursor(parent);
        while let Some(entry) = cursor.next()? {
            match entry.key.as_slice().cmp(name) {
                std::cmp::Ordering::Less => continue,
                std::cmp::Ordering::Greater => return Ok(None),
                std::cmp::Ordering::Equal => {
                    return Ok(match entry.value {
                        EntryValue::Bucket(bucket) => Some(bucket),
                        EntryValue::Data(_) => None,
                    })
                }
            }
        }
        Ok(None)
    }

    /// Visits every entry of every bucket, depth first in key order, with
    /// the path of buckets it lies in (a sub-bucket's entry comes before
    /// its contents). Checks what `bbolt check` checks: no page is used
    /// twice, none is both used and free, and every page below the
    /// high-water mark is used or free.
    pub fn walk<E: From<BboltError>>(&self, visit: &mut WalkVisit<'_, E>) -> Result<(), E> {
        let mut used = PageSet::new(self.meta.high_water);
        used.mark(0, 0, PageLoc::Page(0))?;
        used.mark(1, 0, PageLoc::Page(1))?;
        let free = self.freelist(&mut used)?;
        let mut path: Vec<Vec<u8>> = Vec::new();
        let mut cursors = vec![self.cursor(&self.root())];
        while let Some(cursor) = cursors.last_mut() {
            let Some(entry) = cursor.next_marking(Some(&mut used))? else {
                cursors.pop();
                path.pop();
                continue;
            };
            visit(&path, &entry)?;
            if let EntryValue::Bucket(bucket) = &entry.value {
                if cursors.len() > BUCKET_NESTING_MAX {
                    return Err(BboltError::TooDeep {
                        at: cursors.last().map_or(PageLoc::Page(0), Cursor::location),
                        levels: BUCKET_NESTING_MAX,
                    }
                    .into());
                }
                let child = self.cursor(bucket);
                path.push(entry.key);
                cursors.push(child);
            }
        }
        if let Some(free) = free {
            for page in free.ids() {
                if used.contains(page) {
                    return Err(BboltError::FreedPageInUse { page }.into());
                }
            }
            for page in 0..self.meta.high_water {
                if !used.contains(page) && !free.contains(page) {
                    return Err(BboltError::PageLost { page }.into());
                }
            }
        }
        Ok(())
    }

    /// The free pages the freelist lists (after checking each lies below
    /// the high-water mark and is listed once), or `None` when the file
    /// keeps no freelist. Marks the freelist's own pages used.
    fn freelist(&self, used: &mut PageSet) -> Result<Option<PageSet>, BboltError> {
        if self.meta.freelist == NO_FREELIST {
            return Ok(None);
        }
        let page = self.load(self.meta.freelist, PageLoc::Page(0), Want::Freelist)?;
        used.mark(page.id, page.overflow, PageLoc::Page(page.id))?;
        let at = PageLoc::Page(page.id);
        let (count, first) = if page.count == FREELIST_COUNT_IN_FIRST_ID {
            let count = array_at::<8>(&page.bytes, PAGE_HEADER_BYTES)
                .map(|b| u64::from_le_bytes(*b))
                .ok_or(BboltError::ElementOutOfBounds { at, index: 0 })?;
            (count, PAGE_HEADER_BYTES + 8)
        } else {
            (u64::from(page.count), PAGE_HEADER_BYTES)
        };
        let ids_end = count
            .checked_mul(8)
            .and_then(|bytes| bytes.checked_add(first as u64))
            .filter(|&end| end <= page.bytes.len() as u64)
            .ok_or(BboltError::ElementOutOfBounds {
                at,
                index: usize::try_from(count).unwrap_or(usize::MAX),
            })?;
        let mut free = PageSet::new(self.meta.high_water);
        for chunk in page.bytes[first..ids_end as usize].chunks_exact(8) {
            let id = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            if id >= self.meta.high_water || id < FIRST_DATA_PAGE {
                return Err(BboltError::PageOutOfRange {
                    at,
                    page: id,
                    high_water: self.meta.high_water,
                });
            }
            if free.contains(id) {
                return Err(BboltError::PageTwice { page: id, at });
            }
            free.insert(id);
        }
        Ok(Some(free))
    }

    /// Reads page `id` (with its overflow pages), referred to from
    /// `referrer`, and checks it is what `want` asks for.
    fn load(&self, id: u64, referrer: PageLoc, want: Want) -> Result<Page, BboltError> {
        let high_water = self.meta.high_water;
        if id >= high_water {
            return Err(BboltError::PageOutOfRange {
                at: referrer,
                page: id,
                high_water,
            });
        }
        let page_size = u64::from(self.meta.page_size);
        let mut bytes = vec![0u8; page_size as usize];
        self.source.read_at(id * page_size, &mut bytes)?;
        let header = PageHeader::decode(array_at(&bytes, 0).expect("a page holds its header"));
        if header.id != id {
            return Err(BboltError::PageIdMismatch {
                page: id,
                found: header.id,
            });
        }
        let kind = header.kind();
        let fits = match want {
            Want::Tree => matches!(kind, PageKind::Branch | PageKind::Leaf),
            Want::Freelist => kind == PageKind::Freelist,
        };
        if !fits {
            return Err(BboltError::WrongPageType {
                page: id,
                expected: want.name(),
                found: kind,
            });
        }
        let span_pages = u64::from(header.overflow) + 1;
        if id + span_pages > high_water {
            return Err(BboltError::PageOutOfRange {
                at: PageLoc::Page(id),
                page: id + span_pages - 1,
                high_water,
            });
        }
        let span_bytes = span_pages * page_size;
        if span_bytes > PAGE_SPAN_BYTES_MAX {
            return Err(BboltError::SpanTooLarge {
                page: id,
                pages: span_pages,
            });
        }
        if span_pages > 1 {
            bytes.resize(span_bytes as usize, 0);
            self.source
                .read_at((id + 1) * page_size, &mut bytes[page_size as usize..])?;
        }
        Page::new(PageLoc::Page(id), kind, header, bytes)
    }
}

/// What a page must be where it is referred to.
#[derive(Debug, Clone, Copy)]
enum Want {
    Tree,
    Freelist,
}

impl Want {
    fn name(self) -> &'static str {
        match self {
            Want::Tree => "branch or leaf",
            Want::Freelist => "freelist",
        }
    }
}

/// Reads and checks the meta page `page` at `offset`.
fn read_meta<S: PageSource>(source: &S, page: u64, offset: u64) -> Result<Meta, BboltError> {
    let mut bytes = [0u8; PAGE_HEADER_BYTES + META_BYTES];
    let size_bytes = source.size_bytes();
    if offset.saturating_add(bytes.len() as u64) > size_bytes {
        return Err(BboltError::NotBbolt {
            reason: format!("the file holds {size_bytes} bytes, too few for meta page {page}"),
        });
    }
    source.read_at(offset, &mut bytes)?;
    let header = PageHeader::decode(array_at(&bytes, 0).expect("header bytes"));
    let meta = Meta::decode(array_at(&bytes, PAGE_HEADER_BYTES).expect("meta bytes"));
    if meta.magic != MAGIC {
        return Err(BboltError::NotBbolt {
            reason: format!(
                "meta page {page} has magic {:#010x}, not {MAGIC:#010x}",
                meta.magic
            ),
        });
    }
    if meta.version != VERSION {
        return Err(BboltError::Version {
            page,
            version: meta.version,
        });
    }
    let computed = meta.computed_checksum();
    if meta.checksum != computed {
        return Err(BboltError::MetaChecksum {
            page,
            stored: meta.checksum,
            computed,
        });
    }
    if header.flags != META_PAGE_FLAG {
        return Err(BboltError::WrongPageType {
            page,
            expected: "meta",
            found: header.kind(),
        });
    }
    if !meta.page_size.is_power_of_two()
        || !(PAGE_SIZE_MIN_BYTES..=PAGE_SIZE_MAX_BYTES).contains(&meta.page_size)
    {
        return Err(BboltError::BadMeta {
            page,
            what: format!(
                "page size {} is not a power of two in 512..=1048576",
                meta.page_size
            ),
        });
    }
    if page == 1 && offset != u64::from(meta.page_size) {
        return Err(BboltError::BadMeta {
            page,
            what: format!("page size {} differs from meta page 0's", meta.page_size),
        });
    }
    Ok(meta)
}

/// A branch or leaf page, checked to hold its element array.
#[derive(Debug, Clone)]
struct Page {
    loc: PageLoc,
    id: u64,
    kind: PageKind,
    count: u16,
    overflow: u32,
    bytes: Vec<u8>,
}

impl Page {
    fn new(
        loc: PageLoc,
        kind: PageKind,
        header: PageHeader,
        bytes: Vec<u8>,
    ) -> Result<Self, BboltError> {
        let page = Page {
            loc,
            id: header.id,
            kind,
            count: header.count,
            overflow: header.overflow,
            bytes,
        };
        if kind != PageKind::Freelist {
            let elements_end = PAGE_HEADER_BYTES + usize::from(page.count) * LEAF_ELEMENT_BYTES;
            if elements_end > page.bytes.len() {
                return Err(BboltError::ElementOutOfBounds {
                    at: loc,
                    index: usize::from(page.count).saturating_sub(1),
                });
            }
        }
        Ok(page)
    }

    /// The inline page of a bucket value held on page `holder`.
    fn inline(holder: PageLoc, bytes: Vec<u8>) -> Result<Self, BboltError> {
        let at = PageLoc::InlineIn(holder.page());
        let header = array_at(&bytes, 0)
            .map(PageHeader::decode)
            .ok_or(BboltError::BadBucket {
                at: holder,
                index: None,
            })?;
        if header.kind() != PageKind::Leaf {
            return Err(BboltError::WrongPageType {
                page: holder.page(),
                expected: "inline leaf",
                found: header.kind(),
            });
        }
        Page::new(at, PageKind::Leaf, header, bytes)
    }

    /// Element `index`'s key (and, on a leaf, value) as a range of bytes
    /// `pos` bytes past the element, `lengths` long.
    fn element_range(
        &self,
        index: u16,
        pos: u32,
        total_bytes: u64,
    ) -> Result<std::ops::Range<usize>, BboltError> {
        let element_at = PAGE_HEADER_BYTES + usize::from(index) * LEAF_ELEMENT_BYTES;
        let start = element_at as u64 + u64::from(pos);
        let end = start + total_bytes;
        if end > self.bytes.len() as u64 {
            return Err(BboltError::ElementOutOfBounds {
                at: self.loc,
                index: usize::from(index),
            });
        }
        Ok(start as usize..end as usize)
    }

    fn leaf(&self, index: u16) -> Result<(LeafElement, &[u8], &[u8]), BboltError> {
        debug_assert!(index < self.count);
        let at = PAGE_HEADER_BYTES + usize::from(index) * LEAF_ELEMENT_BYTES;
        let element = LeafElement::decode(array_at(&self.bytes, at).expect("checked in Page::new"));
        let key_bytes = u64::from(element.key_bytes);
        let range = self.element_range(
            index,
            element.pos,
            key_bytes + u64::from(element.value_bytes),
        )?;
        let (key, value) = self.bytes[range].split_at(element.key_bytes as usize);
        Ok((element, key, value))
    }

    fn branch(&self, index: u16) -> Result<(BranchElement, &[u8]), BboltError> {
        debug_assert!(index < self.count);
        let at = PAGE_HEADER_BYTES + usize::from(index) * BRANCH_ELEMENT_BYTES;
        let element =
            BranchElement::decode(array_at(&self.bytes, at).expect("checked in Page::new"));
        let range = self.element_range(index, element.pos, u64::from(element.key_bytes))?;
        Ok((element, &self.bytes[range]))
    }
}

/// One page on a cursor's path and the next element to visit on it.
struct Frame {
    page: Page,
    next: u16,
}

/// Walks one bucket's keys in order. Holds the pages from the root to the
/// current leaf, no more; reads each page once.
pub struct Cursor<'db, S> {
    db: &'db Db<S>,
    bucket: BucketRef,
    stack: Vec<Frame>,
    last_key: Option<Vec<u8>>,
    started: bool,
    /// Pages read so far: a tree has fewer than the file, so more means
    /// the tree refers to pages more than once.
    pages_loaded: u64,
}

impl<S: PageSource> Cursor<'_, S> {
    /// The next entry, or `None` after the last.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Entry>, BboltError> {
        self.next_marking(None)
    }

    /// Where the cursor is, for errors: its current page.
    fn location(&self) -> PageLoc {
        self.stack.last().map_or_else(
            || match &self.bucket {
                BucketRef::Pages { root } => PageLoc::Page(*root),
                BucketRef::Inline { holder, .. } => PageLoc::InlineIn(holder.page()),
            },
            |frame| frame.page.loc,
        )
    }

    fn next_marking(
        &mut self,
        mut used: Option<&mut PageSet>,
    ) -> Result<Option<Entry>, BboltError> {
        if !self.started {
            self.started = true;
            let root = match &self.bucket {
                BucketRef::Pages { root } => {
                    self.load(*root, PageLoc::Page(*root), used.as_deref_mut())?
                }
                BucketRef::Inline { page, holder } => Page::inline(*holder, page.clone())?,
            };
            self.stack.push(Frame {
                page: root,
                next: 0,
            });
        }
        loop {
            let Some(frame) = self.stack.last_mut() else {
                return Ok(None);
            };
            if frame.next >= frame.page.count {
                self.stack.pop();
                continue;
            }
            let index = frame.next;
            frame.next += 1;
            let at = frame.page.loc;
            match frame.page.kind {
                PageKind::Branch => {
                    let (element, key) = frame.page.branch(index)?;
                    if key.is_empty() {
                        return Err(BboltError::EmptyKey {
                            at,
                            index: usize::from(index),
                        });
                    }
                    if self.stack.len() >= TREE_DEPTH_MAX {
                        return Err(BboltError::TooDeep {
                            at,
                            levels: TREE_DEPTH_MAX,
                        });
                    }
                    let child = self.load(element.child, at, used.as_deref_mut())?;
                    self.stack.push(Frame {
                        page: child,
                        next: 0,
                    });
                }
                _ => {
                    let (element, key, value) = frame.page.leaf(index)?;
                    let index = usize::from(index);
                    if key.is_empty() {
                        return Err(BboltError::EmptyKey { at, index });
                    }
                    if self.last_key.as_deref().is_some_and(|last| key <= last) {
                        return Err(BboltError::KeysOutOfOrder { at, index });
                    }
                    let value = match element.flags {
                        0 => EntryValue::Data(value.to_vec()),
                        BUCKET_LEAF_FLAG => EntryValue::Bucket(bucket_value(value, at, index)?),
                        flags => return Err(BboltError::ElementFlags { at, index, flags }),
                    };
                    let key = key.to_vec();
                    self.last_key = Some(key.clone());
                    return Ok(Some(Entry { key, value }));
                }
            }
        }
    }

    fn load(
        &mut self,
        id: u64,
        referrer: PageLoc,
        used: Option<&mut PageSet>,
    ) -> Result<Page, BboltError> {
        self.pages_loaded += 1;
        if self.pages_loaded > self.db.meta.high_water {
            return Err(BboltError::PageTwice {
                page: id,
                at: referrer,
            });
        }
        let page = self.db.load(id, referrer, Want::Tree)?;
        if let Some(used) = used {
            used.mark(id, page.overflow, referrer)?;
        }
        Ok(page)
    }
}

/// A sub-bucket's value: its header, then its page when it is inline.
fn bucket_value(value: &[u8], at: PageLoc, index: usize) -> Result<BucketRef, BboltError> {
    let bad = || BboltError::BadBucket {
        at,
        index: Some(index),
    };
    if let PageLoc::InlineIn(_) = at {
        // bbolt inlines only buckets that hold no bucket.
        return Err(bad());
    }
    let header = array_at::<BUCKET_HEADER_BYTES>(value, 0)
        .map(BucketHeader::decode)
        .ok_or_else(bad)?;
    if header.root != 0 {
        if value.len() != BUCKET_HEADER_BYTES {
            return Err(bad());
        }
        return Ok(BucketRef::Pages { root: header.root });
    }
    Ok(BucketRef::Inline {
        page: value[BUCKET_HEADER_BYTES..].to_vec(),
        holder: at,
    })
}

/// A set of page ids below the high-water mark, one bit each.
struct PageSet {
    bits: Vec<u64>,
}

impl PageSet {
    fn new(high_water: u64) -> Self {
        PageSet {
            bits: vec![0; high_water.div_ceil(64) as usize],
        }
    }

    fn contains(&self, page: u64) -> bool {
        self.bits
            .get((page / 64) as usize)
            .is_some_and(|word| word & (1 << (page % 64)) != 0)
    }

    fn insert(&mut self, page: u64) {
        let word = &mut self.bits[(page / 64) as usize];
        *word |= 1 << (page % 64);
    }

    /// Marks page `id` and its `overflow` pages used; a page used already
    /// is an error.
    fn mark(&mut self, id: u64, overflow: u32, referrer: PageLoc) -> Result<(), BboltError> {
        for page in id..=id + u64::from(overflow) {
            if self.contains(page) {
                return Err(BboltError::PageTwice { page, at: referrer });
            }
            self.insert(page);
        }
        Ok(())
    }

    fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.bits.iter().enumerate().flat_map(|(i, &word)| {
            (0..64)
                .filter(move |bit| word & (1 << bit) != 0)
                .map(move |bit| i as u64 * 64 + bit)
        })
    }
}
