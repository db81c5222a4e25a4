//! A delta's payload (what the envelope seals):
//!
//! ```text
//! magic "E2DDELTA", version 1 (u8)
//! header: cluster_id u64, base_revision i64, base_taken_at_ms u64,
//!         base_index u64, from_index u64, from_revision i64,
//!         to_index u64, to_revision i64, to_time_ms u64,
//!         record_count u32, CRC-32 of everything before it (u32)
//! records: index u64, revision i64, applied_at_ms u64,
//!          data_len u32, data, CRC-32 of the record before it (u32)
//! ```
//!
//! Integers are big-endian. Each record carries its own checksum, so a
//! damaged delta still gives every record before the damage, and the
//! restore says exactly where it stopped.

use crc32fast::Hasher;

use super::journal::DeltaRecord;
use crate::wal::RECORD_BYTES_MAX;

/// How a delta's payload starts.
pub const DELTA_MAGIC: &[u8; 8] = b"E2DDELTA";
const MAGIC: &[u8; 8] = DELTA_MAGIC;
const VERSION: u8 = 1;
const HEADER_BYTES: usize = MAGIC.len() + 1 + 9 * 8 + 4 + 4;
const RECORD_FIXED_BYTES: usize = 8 + 8 + 8 + 4 + 4;

/// What a delta says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaHeader {
    pub cluster_id: u64,
    /// The full snapshot the chain starts from.
    pub base_revision: i64,
    pub base_taken_at_ms: u64,
    /// The raft index the full snapshot holds everything up to.
    pub base_index: u64,
    pub from_index: u64,
    pub from_revision: i64,
    pub to_index: u64,
    pub to_revision: i64,
    pub to_time_ms: u64,
}

/// Where a delta stops making sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeltaDamage {
    #[error("not a delta (no E2DDELTA header)")]
    Magic,
    #[error("written by a newer e2d (delta format {0})")]
    Version(u8),
    #[error("its header is damaged")]
    Header,
    #[error("record {record} of {count} (at byte {offset}) is damaged")]
    Record {
        record: u32,
        count: u32,
        offset: usize,
    },
    #[error("record {record} of {count} (at byte {offset}) is out of order or outside the delta's range")]
    OutOfOrder {
        record: u32,
        count: u32,
        offset: usize,
    },
    #[error("{0} bytes follow the last record")]
    Trailing(usize),
}

/// A delta read back: its header, the records before any damage, and
/// the damage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedDelta {
    pub header: DeltaHeader,
    pub records: Vec<DeltaRecord>,
    pub damage: Option<DeltaDamage>,
}

/// The payload of a delta holding `records` (in index order, within the
/// header's range).
pub fn encode_delta<R: std::borrow::Borrow<DeltaRecord>>(
    header: &DeltaHeader,
    records: &[R],
) -> Vec<u8> {
    let count = u32::try_from(records.len()).expect("a delta holds fewer than 2^32 records");
    let data_bytes: usize = records
        .iter()
        .map(|r| r.borrow().data.len() + RECORD_FIXED_BYTES)
        .sum();
    let mut out = Vec::with_capacity(HEADER_BYTES + data_bytes);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    for field in [
        header.cluster_id,
        header.base_revision as u64,
        header.base_taken_at_ms,
        header.base_index,
        header.from_index,
        header.from_revision as u64,
        header.to_index,
        header.to_revision as u64,
        header.to_time_ms,
    ] {
        out.extend_from_slice(&field.to_be_bytes());
    }
    out.extend_from_slice(&count.to_be_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    for record in records {
        let record = record.borrow();
        assert!(record.index > header.from_index && record.index <= header.to_index);
        let start = out.len();
        out.extend_from_slice(&record.index.to_be_bytes());
        out.extend_from_slice(&record.revision.to_be_bytes());
        out.extend_from_slice(&record.applied_at_ms.to_be_bytes());
        let len = u32::try_from(record.data.len()).expect("a proposal fits a raft log record");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&record.data);
        let mut hasher = Hasher::new();
        hasher.update(&out[start..]);
        out.extend_from_slice(&hasher.finalize().to_be_bytes());
    }
    debug_assert_eq!(out.len(), HEADER_BYTES + data_bytes);
    out
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// Reads a delta's payload. A damaged header refuses it whole; a
/// damaged record ends the records there (those before it are kept).
pub fn decode_delta(bytes: &[u8]) -> Result<DecodedDelta, DeltaDamage> {
    if bytes.len() < MAGIC.len() + 1 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(DeltaDamage::Magic);
    }
    if bytes[MAGIC.len()] != VERSION {
        return Err(DeltaDamage::Version(bytes[MAGIC.len()]));
    }
    if bytes.len() < HEADER_BYTES
        || crc32fast::hash(&bytes[..HEADER_BYTES - 4]) != u32_at(bytes, HEADER_BYTES - 4)
    {
        return Err(DeltaDamage::Header);
    }
    let field = |n: usize| u64_at(bytes, MAGIC.len() + 1 + 8 * n);
    let header = DeltaHeader {
        cluster_id: field(0),
        base_revision: field(1) as i64,
        base_taken_at_ms: field(2),
        base_index: field(3),
        from_index: field(4),
        from_revision: field(5) as i64,
        to_index: field(6),
        to_revision: field(7) as i64,
        to_time_ms: field(8),
    };
    if header.from_index > header.to_index
        || header.from_revision > header.to_revision
        || header.base_index > header.from_index
        || header.base_revision < 0
    {
        return Err(DeltaDamage::Header);
    }
    let count = u32_at(bytes, HEADER_BYTES - 8);
    let mut records = Vec::new();
    let mut at = HEADER_BYTES;
    let (mut last_index, mut last_revision) = (header.from_index, header.from_revision);
    for record in 0..count {
        let damaged = DeltaDamage::Record {
            record: record + 1,
            count,
            offset: at,
        };
        if bytes.len() - at < RECORD_FIXED_BYTES {
            return Ok(with_damage(header, records, damaged));
        }
        let len = u32_at(bytes, at + 24) as usize;
        if len > RECORD_BYTES_MAX || bytes.len() - at - RECORD_FIXED_BYTES < len {
            return Ok(with_damage(header, records, damaged));
        }
        let end = at + 28 + len;
        if crc32fast::hash(&bytes[at..end]) != u32_at(bytes, end) {
            return Ok(with_damage(header, records, damaged));
        }
        let decoded = DeltaRecord {
            index: u64_at(bytes, at),
            revision: u64_at(bytes, at + 8) as i64,
            applied_at_ms: u64_at(bytes, at + 16),
            data: bytes[at + 28..end].to_vec(),
        };
        if decoded.index <= last_index
            || decoded.index > header.to_index
            || decoded.revision < last_revision
            || decoded.revision > header.to_revision
        {
            let out_of_order = DeltaDamage::OutOfOrder {
                record: record + 1,
                count,
                offset: at,
            };
            return Ok(with_damage(header, records, out_of_order));
        }
        (last_index, last_revision) = (decoded.index, decoded.revision);
        records.push(decoded);
        at = end + 4;
    }
    let damage = (at != bytes.len()).then(|| DeltaDamage::Trailing(bytes.len() - at));
    Ok(DecodedDelta {
        header,
        records,
        damage,
    })
}

fn with_damage(
    header: DeltaHeader,
    records: Vec<DeltaRecord>,
    damage: DeltaDamage,
) -> DecodedDelta {
    DecodedDelta {
        header,
        records,
        damage: Some(damage),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn delta() -> impl Strategy<Value = (DeltaHeader, Vec<DeltaRecord>)> {
        prop::collection::vec(
            (1u64..4, 0i64..2, prop::collection::vec(any::<u8>(), 0..40)),
            0..12,
        )
        .prop_map(|steps| {
            let (mut index, mut revision) = (10u64, 7i64);
            let records: Vec<DeltaRecord> = steps
                .into_iter()
                .map(|(gap, bump, data)| {
                    index += gap;
                    revision += bump;
                    DeltaRecord {
                        index,
                        revision,
                        applied_at_ms: index * 3,
                        data,
                    }
                })
                .collect();
            let header = DeltaHeader {
                cluster_id: 0xe2d,
                base_revision: 5,
                base_taken_at_ms: 1,
                base_index: 8,
                from_index: 10,
                from_revision: 7,
                to_index: index + 1,
                to_revision: revision,
                to_time_ms: 99,
            };
            (header, records)
        })
    }

    proptest! {
        #[test]
        fn deltas_round_trip((header, records) in delta()) {
            let decoded = decode_delta(&encode_delta(&header, &records)).unwrap();
            prop_assert_eq!(decoded, DecodedDelta { header, records, damage: None });
        }

        /// Any flipped byte is found: the header is refused, or the records
        /// stop before the damaged one, each kept record intact.
        #[test]
        fn damage_never_passes_unseen((header, records) in delta(), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let mut bytes = encode_delta(&header, &records);
            let at = at.index(bytes.len());
            bytes[at] ^= flip;
            match decode_delta(&bytes) {
                Err(_) => prop_assert!(at < HEADER_BYTES),
                Ok(decoded) => {
                    prop_assert!(decoded.damage.is_some());
                    prop_assert!(decoded.records.len() < records.len());
                    prop_assert_eq!(&decoded.records[..], &records[..decoded.records.len()]);
                }
            }
        }

        #[test]
        fn a_cut_delta_says_so((header, records) in delta(), keep in any::<prop::sample::Index>()) {
            let bytes = encode_delta(&header, &records);
            let keep = keep.index(bytes.len());
            if let Ok(decoded) = decode_delta(&bytes[..keep]) {
                prop_assert!(decoded.damage.is_some() || records.is_empty() && keep == bytes.len());
            }
        }
    }
}
