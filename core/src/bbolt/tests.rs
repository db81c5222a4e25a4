use std::collections::BTreeMap;

use proptest::prelude::*;

use super::layout::{
    BranchElement, LeafElement, Meta, PageHeader, BRANCH_PAGE_FLAG, LEAF_PAGE_FLAG, META_PAGE_FLAG,
    PAGE_HEADER_BYTES,
};
use super::*;

/// A bucket's contents: values and sub-buckets by key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Tree(BTreeMap<Vec<u8>, Node>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Value(Vec<u8>),
    Bucket(Tree),
}

fn write_tree(top: &Tree) -> Vec<u8> {
    fn write_into(writer: &mut DbWriter<Vec<u8>>, tree: &Tree) {
        for (key, node) in &tree.0 {
            match node {
                Node::Value(value) => writer.put(key, value).unwrap(),
                Node::Bucket(bucket) => {
                    writer.begin_bucket(key).unwrap();
                    write_into(writer, bucket);
                    writer.end_bucket().unwrap();
                }
            }
        }
    }
    let mut writer = DbWriter::new(Vec::new());
    write_into(&mut writer, top);
    let (bytes, written) = writer.finish().unwrap();
    assert_eq!(bytes.len() as u64, written.size_bytes);
    bytes
}

/// Reads every bucket back with [`Db::walk`].
fn read_tree(bytes: &[u8]) -> Result<Tree, BboltError> {
    let db = Db::open(bytes)?;
    let mut top = Tree::default();
    db.walk(
        &mut |path: &[Vec<u8>], entry: &Entry| -> Result<(), BboltError> {
            let mut tree = &mut top;
            for name in path {
                tree = match tree.0.get_mut(name) {
                    Some(Node::Bucket(inner)) => inner,
                    _ => unreachable!("the walk enters a bucket after its entry"),
                };
            }
            let node = match &entry.value {
                EntryValue::Data(value) => Node::Value(value.clone()),
                EntryValue::Bucket(_) => Node::Bucket(Tree::default()),
            };
            tree.0.insert(entry.key.clone(), node);
            Ok(())
        },
    )?;
    Ok(top)
}

fn value_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..40),
        1 => proptest::collection::vec(any::<u8>(), 900..1200),
        1 => (3000usize..20_000).prop_map(|n| (0..n).map(|i| (i % 251) as u8).collect()),
    ]
}

fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 1..24),
        1 => proptest::collection::vec(any::<u8>(), 200..600),
    ]
}

fn leaf_bucket() -> impl Strategy<Value = Tree> {
    prop_oneof![
        3 => proptest::collection::btree_map(key_strategy(), value_strategy(), 0..12),
        1 => proptest::collection::btree_map(key_strategy(), value_strategy(), 100..700),
    ]
    .prop_map(|map| Tree(map.into_iter().map(|(k, v)| (k, Node::Value(v))).collect()))
}

fn nested_bucket() -> impl Strategy<Value = Tree> {
    leaf_bucket().prop_recursive(2, 24, 6, |inner| {
        (
            proptest::collection::btree_map(key_strategy(), value_strategy(), 0..20),
            proptest::collection::btree_map(key_strategy(), inner, 0..4),
        )
            .prop_map(|(values, buckets)| {
                let mut tree: BTreeMap<Vec<u8>, Node> = values
                    .into_iter()
                    .map(|(k, v)| (k, Node::Value(v)))
                    .collect();
                tree.extend(buckets.into_iter().map(|(k, b)| (k, Node::Bucket(b))));
                Tree(tree)
            })
    })
}

/// Top-level buckets (the top level holds buckets only).
fn file_strategy() -> impl Strategy<Value = Tree> {
    proptest::collection::btree_map(key_strategy(), nested_bucket(), 0..5)
        .prop_map(|map| Tree(map.into_iter().map(|(k, b)| (k, Node::Bucket(b))).collect()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn written_files_read_back(top in file_strategy()) {
        let bytes = write_tree(&top);
        prop_assert_eq!(read_tree(&bytes).unwrap(), top);
    }

    /// Damage anywhere is refused or read the same way twice; never a panic.
    #[test]
    fn damage_is_refused_or_read_consistently(
        top in file_strategy(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..8),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let mut bytes = write_tree(&top);
        for (at, mask) in flips {
            let at = at.index(bytes.len());
            bytes[at] ^= mask;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        let first = read_tree(&bytes);
        let second = read_tree(&bytes);
        prop_assert_eq!(first, second);
    }
}

fn sample() -> Tree {
    let values = |n: usize| {
        Tree(
            (0..n)
                .map(|i| {
                    (
                        format!("k{i:05}").into_bytes(),
                        Node::Value(vec![b'v'; i % 50]),
                    )
                })
                .collect(),
        )
    };
    Tree(BTreeMap::from([
        (b"big".to_vec(), Node::Bucket(values(3000))),
        (b"small".to_vec(), Node::Bucket(values(3))),
    ]))
}

#[test]
fn big_buckets_have_branches_and_small_ones_are_inline() {
    let bytes = write_tree(&sample());
    let db = Db::open(bytes.as_slice()).unwrap();
    let big = db.bucket(&db.root(), b"big").unwrap().unwrap();
    let BucketRef::Pages { root } = big else {
        panic!("a large bucket has pages of its own");
    };
    let header = PageHeader::decode(bytes[root as usize * 4096..][..16].try_into().unwrap());
    assert_eq!(header.flags, BRANCH_PAGE_FLAG);
    let small = db.bucket(&db.root(), b"small").unwrap().unwrap();
    assert!(matches!(small, BucketRef::Inline { .. }));
    assert_eq!(db.bucket(&db.root(), b"none").unwrap(), None);
    let mut cursor = db.cursor(&big);
    let mut count = 0;
    while let Some(entry) = cursor.next().unwrap() {
        assert_eq!(entry.key, format!("k{count:05}").into_bytes());
        count += 1;
    }
    assert_eq!(count, 3000);
}

#[test]
fn an_empty_file_of_buckets_is_valid() {
    let bytes = write_tree(&Tree::default());
    assert_eq!(bytes.len(), 4 * 4096);
    assert_eq!(read_tree(&bytes).unwrap(), Tree::default());
}

#[test]
fn writer_refuses_misuse() {
    let mut writer = DbWriter::new(Vec::new());
    assert_eq!(writer.put(b"k", b"v"), Err(WriteError::ValueInRoot));
    assert_eq!(writer.end_bucket(), Err(WriteError::NoOpenBucket));
    writer.begin_bucket(b"b").unwrap();
    writer.put(b"k", b"v").unwrap();
    assert!(matches!(
        writer.put(b"k", b"w"),
        Err(WriteError::KeyOrder { .. })
    ));
    assert_eq!(writer.put(b"", b"w"), Err(WriteError::EmptyKey));
    assert_eq!(
        writer.put(&[1; 40_000], b""),
        Err(WriteError::KeyTooLarge { bytes: 40_000 })
    );
    writer.end_bucket().unwrap();
    assert!(matches!(
        writer.begin_bucket(b"a"),
        Err(WriteError::KeyOrder { .. })
    ));
    writer.begin_bucket(b"c").unwrap();
    assert!(matches!(writer.finish(), Err(WriteError::BucketLeftOpen)));
}

fn page(bytes: &mut [u8], id: u64) -> &mut [u8] {
    &mut bytes[id as usize * 4096..][..4096]
}

fn header_of(bytes: &[u8], id: u64) -> PageHeader {
    PageHeader::decode(bytes[id as usize * 4096..][..16].try_into().unwrap())
}

fn set_header(bytes: &mut [u8], id: u64, header: PageHeader) {
    page(bytes, id)[..16].copy_from_slice(&header.encode());
}

fn meta_of(bytes: &[u8], id: u64) -> Meta {
    Meta::decode(bytes[id as usize * 4096 + 16..][..64].try_into().unwrap())
}

fn set_meta(bytes: &mut [u8], id: u64, meta: Meta) {
    page(bytes, id)[16..80].copy_from_slice(&meta.encode());
}

/// The root page of bucket `name` in a file written by [`write_tree`].
fn bucket_root(bytes: &[u8], name: &[u8]) -> u64 {
    let db = Db::open(bytes).unwrap();
    match db.bucket(&db.root(), name).unwrap() {
        Some(BucketRef::Pages { root }) => root,
        other => panic!("bucket {name:?} has no pages: {other:?}"),
    }
}

#[test]
fn not_bbolt_files_are_named_so() {
    let error = read_tree(&[0u8; 10]).unwrap_err();
    assert!(
        error.to_string().starts_with("not a bbolt database"),
        "{error}"
    );
    let error = read_tree(&vec![7u8; 3 * 4096]).unwrap_err();
    assert!(matches!(error, BboltError::NotBbolt { .. }), "{error}");
    assert!(error.to_string().contains("magic"), "{error}");
}

#[test]
fn a_damaged_meta_page_falls_back_to_the_other() {
    let top = sample();
    let mut bytes = write_tree(&top);
    page(&mut bytes, 0)[40] ^= 1;
    assert_eq!(read_tree(&bytes).unwrap(), top);
    page(&mut bytes, 1)[40] ^= 1;
    let error = read_tree(&bytes).unwrap_err();
    let BboltError::NoValidMeta { page0, page1 } = &error else {
        panic!("{error}");
    };
    assert!(
        matches!(**page0, BboltError::MetaChecksum { page: 0, .. }),
        "{error}"
    );
    assert!(
        matches!(**page1, BboltError::MetaChecksum { page: 1, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("checksum"), "{error}");
}

#[test]
fn the_newer_meta_page_wins() {
    let mut bytes = write_tree(&sample());
    // Meta page 1 becomes the newer one and points at a page beyond the
    // data: that is what must be read, and refused.
    let mut meta = meta_of(&bytes, 1);
    meta.txid = 9;
    meta.root.root = 2;
    meta.checksum = meta.computed_checksum();
    set_meta(&mut bytes, 1, meta);
    let error = read_tree(&bytes).unwrap_err();
    assert_eq!(
        error,
        BboltError::WrongPageType {
            page: 2,
            expected: "branch or leaf",
            found: PageKind::Freelist
        }
    );
}

#[test]
fn truncated_files_are_refused() {
    let bytes = write_tree(&sample());
    let error = read_tree(&bytes[..bytes.len() - 4096]).unwrap_err();
    assert!(matches!(error, BboltError::Truncated { .. }), "{error}");
    assert!(error.to_string().starts_with("truncated file"), "{error}");
}

#[test]
fn pages_beyond_the_high_water_mark_are_refused() {
    let mut bytes = write_tree(&sample());
    let root = bucket_root(&bytes, b"big");
    let high_water = meta_of(&bytes, 0).high_water;
    let at = root as usize * 4096 + PAGE_HEADER_BYTES;
    let mut element = BranchElement::decode(bytes[at..at + 16].try_into().unwrap());
    element.child = high_water + 5;
    bytes[at..at + 16].copy_from_slice(&element.encode());
    assert_eq!(
        read_tree(&bytes).unwrap_err(),
        BboltError::PageOutOfRange {
            at: PageLoc::Page(root),
            page: high_water + 5,
            high_water
        }
    );
}

#[test]
fn pages_of_the_wrong_type_or_id_are_refused() {
    let mut bytes = write_tree(&sample());
    let root = bucket_root(&bytes, b"big");
    let mut header = header_of(&bytes, root);
    header.flags = META_PAGE_FLAG;
    set_header(&mut bytes, root, header);
    assert_eq!(
        read_tree(&bytes).unwrap_err(),
        BboltError::WrongPageType {
            page: root,
            expected: "branch or leaf",
            found: PageKind::Meta
        }
    );
    header.flags = BRANCH_PAGE_FLAG;
    header.id = 1234;
    set_header(&mut bytes, root, header);
    assert_eq!(
        read_tree(&bytes).unwrap_err(),
        BboltError::PageIdMismatch {
            page: root,
            found: 1234
        }
    );
}

#[test]
fn keys_out_of_order_are_refused() {
    let mut bytes = write_tree(&sample());
    // The second leaf of "big" starts with a key after its first leaf's
    // keys; make it sort before them.
    let root = bucket_root(&bytes, b"big");
    let at = root as usize * 4096 + PAGE_HEADER_BYTES + 16;
    let second_leaf = BranchElement::decode(bytes[at..at + 16].try_into().unwrap()).child;
    let element_at = second_leaf as usize * 4096 + PAGE_HEADER_BYTES;
    let element = LeafElement::decode(bytes[element_at..element_at + 16].try_into().unwrap());
    bytes[element_at + element.pos as usize] = b'a';
    assert_eq!(
        read_tree(&bytes).unwrap_err(),
        BboltError::KeysOutOfOrder {
            at: PageLoc::Page(second_leaf),
            index: 0
        }
    );
}

#[test]
fn elements_outside_their_page_are_refused() {
    let mut bytes = write_tree(&sample());
    let root = bucket_root(&bytes, b"big");
    let at = root as usize * 4096 + PAGE_HEADER_BYTES;
    let leaf = BranchElement::decode(bytes[at..at + 16].try_into().unwrap()).child;
    let element_at = leaf as usize * 4096 + PAGE_HEADER_BYTES + 16;
    let mut element = LeafElement::decode(bytes[element_at..element_at + 16].try_into().unwrap());
    element.value_bytes = 5000;
    bytes[element_at..element_at + 16].copy_from_slice(&element.encode());
    assert_eq!(
        read_tree(&bytes).unwrap_err(),
        BboltError::ElementOutOfBounds {
            at: PageLoc::Page(leaf),
            index: 1
        }
    );
}

/// A file whose one bucket is a chain of `levels` branch pages over an
/// empty leaf, built by hand.
fn chain_file(levels: u64) -> Vec<u8> {
    let first_branch = 4;
    let leaf = first_branch + levels;
    let high_water = leaf + 1;
    let mut bytes = vec![0u8; high_water as usize * 4096];
    for id in [0, 1] {
        set_header(
            &mut bytes,
            id,
            PageHeader {
                id,
                flags: META_PAGE_FLAG,
                count: 0,
                overflow: 0,
            },
        );
        set_meta(
            &mut bytes,
            id,
            Meta::new(3, layout::NO_FREELIST, high_water, 2 - id),
        );
    }
    // The root bucket: one bucket "b" whose root is the first branch.
    let mut root = vec![];
    root.extend_from_slice(
        &PageHeader {
            id: 3,
            flags: LEAF_PAGE_FLAG,
            count: 1,
            overflow: 0,
        }
        .encode(),
    );
    root.extend_from_slice(
        &LeafElement {
            flags: layout::BUCKET_LEAF_FLAG,
            pos: 16,
            key_bytes: 1,
            value_bytes: 16,
        }
        .encode(),
    );
    root.push(b'b');
    root.extend_from_slice(
        &layout::BucketHeader {
            root: first_branch,
            sequence: 0,
        }
        .encode(),
    );
    page(&mut bytes, 3)[..root.len()].copy_from_slice(&root);
    for id in first_branch..leaf {
        let mut branch = PageHeader {
            id,
            flags: BRANCH_PAGE_FLAG,
            count: 1,
            overflow: 0,
        }
        .encode()
        .to_vec();
        branch.extend_from_slice(
            &BranchElement {
                pos: 16,
                key_bytes: 1,
                child: id + 1,
            }
            .encode(),
        );
        branch.push(b'k');
        page(&mut bytes, id)[..branch.len()].copy_from_slice(&branch);
    }
    set_header(
        &mut bytes,
        leaf,
        PageHeader {
            id: leaf,
            flags: LEAF_PAGE_FLAG,
            count: 0,
            overflow: 0,
        },
    );
    bytes
}

#[test]
fn too_deep_trees_are_refused() {
    let shallow = chain_file(5);
    assert_eq!(
        read_tree(&shallow).unwrap(),
        Tree(BTreeMap::from([(
            b"b".to_vec(),
            Node::Bucket(Tree::default())
        )]))
    );
    let deep = chain_file(40);
    assert!(
        matches!(read_tree(&deep), Err(BboltError::TooDeep { .. })),
        "{:?}",
        read_tree(&deep)
    );
}

#[test]
fn pages_used_twice_or_lost_are_refused() {
    // A branch that points at itself.
    let mut bytes = chain_file(2);
    let at = 5 * 4096 + PAGE_HEADER_BYTES;
    let mut element = BranchElement::decode(bytes[at..at + 16].try_into().unwrap());
    element.child = 5;
    bytes[at..at + 16].copy_from_slice(&element.encode());
    assert!(matches!(
        read_tree(&bytes),
        Err(BboltError::PageTwice { page: 5, .. })
    ));
    // A page neither used nor free, in a file that keeps a freelist.
    let mut bytes = write_tree(&sample());
    let high_water = meta_of(&bytes, 0).high_water;
    bytes.extend_from_slice(&[0u8; 4096]);
    set_header(
        &mut bytes,
        high_water,
        PageHeader {
            id: high_water,
            flags: LEAF_PAGE_FLAG,
            count: 0,
            overflow: 0,
        },
    );
    for id in [0, 1] {
        let mut meta = meta_of(&bytes, id);
        meta.high_water += 1;
        meta.checksum = meta.computed_checksum();
        set_meta(&mut bytes, id, meta);
    }
    assert_eq!(
        read_tree(&bytes).unwrap_err(),
        BboltError::PageLost { page: high_water }
    );
}
