//! The raft log's on-disk format and its replay: the decisions behind the
//! write-ahead log, which the shell keeps as a directory of segment files.
//!
//! A segment is a sequence of framed records, each
//!
//! ```text
//! length: u32 LE   bytes after this 8-byte header (kind and payload)
//! crc:    u32 LE   CRC-32 of the segment's sequence number (u64 LE),
//!                  the kind and the payload
//! kind:   u8
//! payload
//! ```
//!
//! A length of zero ends a segment's records: segments are zero-filled
//! before use. Seeding the checksum with the segment's sequence number
//! means a record can never be taken for one of another segment.
//!
//! Replay reads the segments in order and rebuilds the log: the entries
//! after the log's start, the last hard state, the log's start and whether
//! a snapshot install was under way. An entry record replaces every entry
//! at or after its index, as raft's append does, so a log that a new leader
//! overwrote replays to what it became.

use std::fmt;

/// Bytes before a record's kind: length and checksum.
pub const RECORD_HEADER_BYTES: usize = 8;
/// The largest record a reader accepts; anything longer is damage.
pub const RECORD_BYTES_MAX: usize = 64 * 1024 * 1024;

const KIND_ENTRY: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_COMPACT: u8 = 3;
const KIND_SNAPSHOT: u8 = 4;
const KIND_INSTALLING: u8 = 5;

/// One change to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    /// A raft entry at `index`, encoded by the shell; replaces every entry
    /// at or after `index`.
    Entry { index: u64, encoded: &'a [u8] },
    /// raft's hard state (term, vote, commit), encoded by the shell.
    HardState(&'a [u8]),
    /// The entries up to and including `index` are applied and durable in
    /// the state machine: they leave the log, which now starts after the
    /// entry `index` of term `term`.
    Compact { index: u64, term: u64 },
    /// A snapshot replaced the state machine: every entry leaves the log,
    /// which now starts after `index` of term `term`.
    Snapshot { index: u64, term: u64 },
    /// A snapshot install started (`true`) or ended (`false`).
    Installing(bool),
}

impl Record<'_> {
    fn kind(&self) -> u8 {
        match self {
            Record::Entry { .. } => KIND_ENTRY,
            Record::HardState(_) => KIND_HARD_STATE,
            Record::Compact { .. } => KIND_COMPACT,
            Record::Snapshot { .. } => KIND_SNAPSHOT,
            Record::Installing(_) => KIND_INSTALLING,
        }
    }

    /// Appends the framed record to `out`, checksummed for segment `seq`.
    pub fn encode(&self, seq: u64, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; RECORD_HEADER_BYTES]);
        out.push(self.kind());
        match self {
            Record::Entry { index, encoded } => {
                out.extend_from_slice(&index.to_le_bytes());
                out.extend_from_slice(encoded);
            }
            Record::HardState(encoded) => out.extend_from_slice(encoded),
            Record::Compact { index, term } | Record::Snapshot { index, term } => {
                out.extend_from_slice(&index.to_le_bytes());
                out.extend_from_slice(&term.to_le_bytes());
            }
            Record::Installing(on) => out.push(u8::from(*on)),
        }
        let body = &out[start + RECORD_HEADER_BYTES..];
        let length = u32::try_from(body.len()).expect("a record is smaller than 4 GiB");
        let crc = checksum(seq, body);
        out[start..start + 4].copy_from_slice(&length.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    fn decode(body: &[u8]) -> Option<Record<'_>> {
        let (&kind, payload) = body.split_first()?;
        let u64_at = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(
                payload.get(at..at + 8)?.try_into().ok()?,
            ))
        };
        let record = match kind {
            KIND_ENTRY => Record::Entry {
                index: u64_at(0)?,
                encoded: &payload[8..],
            },
            KIND_HARD_STATE => Record::HardState(payload),
            KIND_COMPACT if payload.len() == 16 => Record::Compact {
                index: u64_at(0)?,
                term: u64_at(8)?,
            },
            KIND_SNAPSHOT if payload.len() == 16 => Record::Snapshot {
                index: u64_at(0)?,
                term: u64_at(8)?,
            },
            KIND_INSTALLING if payload.len() == 1 => Record::Installing(payload[0] == 1),
            _ => return None,
        };
        Some(record)
    }
}

fn checksum(seq: u64, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(body);
    hasher.finalize()
}

/// How a segment's records ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentEnd {
    /// At `offset`, the end of the bytes or a zero length: nothing follows.
    Clean { offset: usize },
    /// At a record that a crash cut short, at `offset`: the bytes end
    /// inside it, or a whole sector of it never reached the disk. Only the
    /// last segment can end so (every earlier one was synced whole before
    /// the next was made); what follows the cut was never synced.
    Torn { offset: usize },
    /// At a record that fails its checks although all of it was written, at
    /// `offset`: damage, in any segment.
    Damaged { offset: usize },
}

/// The unit a disk writes whole: a crash leaves each one as it was or as
/// it was to become, never half of each.
pub const SECTOR_BYTES: usize = 512;

/// Bytes a search for the next whole record after a bad one checksums at
/// most; past it the bad record counts as damage, which is the safe side.
const RESYNC_CHECKSUM_BYTES_MAX: usize = 1 << 30;

/// The records of segment `seq`, up to where they end, and how and where
/// they end.
pub fn read_segment(seq: u64, bytes: &[u8]) -> (Vec<Record<'_>>, SegmentEnd) {
    let mut records = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        match record_at(seq, bytes, offset) {
            Framed::Record(record, next) => {
                records.push(record);
                offset = next;
            }
            Framed::End => return (records, SegmentEnd::Clean { offset }),
            Framed::Bad => return (records, classify_bad_record(seq, bytes, offset)),
        }
    }
    (records, SegmentEnd::Clean { offset })
}

/// What the bytes at an offset hold.
enum Framed<'a> {
    /// A whole record, and the offset after it.
    Record(Record<'a>, usize),
    /// Zeros: the segment's records end here.
    End,
    /// Something that is not a whole, checksummed record.
    Bad,
}

fn header_at(bytes: &[u8], offset: usize) -> Option<(usize, u32)> {
    let header = bytes.get(offset..offset.checked_add(RECORD_HEADER_BYTES)?)?;
    let length = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    Some((length, crc))
}

fn record_at(seq: u64, bytes: &[u8], offset: usize) -> Framed<'_> {
    let Some((length, crc)) = header_at(bytes, offset) else {
        // A header cut short is zeros (the end) or a torn write.
        if bytes[offset..].iter().all(|&b| b == 0) {
            return Framed::End;
        }
        return Framed::Bad;
    };
    if length == 0 && crc == 0 {
        return Framed::End;
    }
    let body_start = offset + RECORD_HEADER_BYTES;
    let Some(body) = (length <= RECORD_BYTES_MAX)
        .then(|| bytes.get(body_start..body_start + length))
        .flatten()
    else {
        return Framed::Bad;
    };
    if checksum(seq, body) != crc {
        return Framed::Bad;
    }
    match Record::decode(body) {
        Some(record) => Framed::Record(record, body_start + length),
        None => Framed::Bad,
    }
}

/// Tells a record a crash cut short from damage. The record at `offset`
/// claims the bytes up to where its length says it ends. It is torn if
/// part of that span never reached the disk (the bytes end inside it, or a
/// sector of it holds nothing but zeros) and no whole record starts
/// between it and that part: a whole record there would mean that its own
/// length is what changed. A record all of whose sectors were written and
/// which still fails its checks was changed after it was written.
fn classify_bad_record(seq: u64, bytes: &[u8], offset: usize) -> SegmentEnd {
    let claimed_end = match header_at(bytes, offset) {
        None => return SegmentEnd::Torn { offset },
        Some((length, _)) if length <= RECORD_BYTES_MAX => offset + RECORD_HEADER_BYTES + length,
        Some(_) => offset + RECORD_HEADER_BYTES,
    };
    let lost_from = match first_zero_sector(bytes, offset, claimed_end) {
        Some(at) => at,
        None if claimed_end > bytes.len() => bytes.len(),
        None => return SegmentEnd::Damaged { offset },
    };
    match next_whole_record(seq, bytes, offset + 1, lost_from) {
        Resync::None => SegmentEnd::Torn { offset },
        Resync::Found | Resync::GaveUp => SegmentEnd::Damaged { offset },
    }
}

enum Resync {
    Found,
    None,
    GaveUp,
}

/// Whether a whole, checksummed record lies within `from..to`.
fn next_whole_record(seq: u64, bytes: &[u8], from: usize, to: usize) -> Resync {
    let mut checksummed_bytes = 0usize;
    for offset in from..to {
        let Some((length, _)) = header_at(bytes, offset) else {
            return Resync::None;
        };
        let kind = bytes.get(offset + RECORD_HEADER_BYTES).copied();
        let plausible = length > 0
            && offset + RECORD_HEADER_BYTES + length <= to
            && matches!(kind, Some(KIND_ENTRY..=KIND_INSTALLING));
        if !plausible {
            continue;
        }
        checksummed_bytes += length;
        if checksummed_bytes > RESYNC_CHECKSUM_BYTES_MAX {
            return Resync::GaveUp;
        }
        if let Framed::Record(..) = record_at(seq, bytes, offset) {
            return Resync::Found;
        }
    }
    Resync::None
}

/// Where the first sector that `from..to` overlaps and that never reached
/// the disk begins: from `from` (or the sector's start, if later) to the
/// sector's end (clipped to the bytes) it holds nothing but zeros. The
/// sector that holds `from` may also hold the end of an earlier, synced
/// write; losing the later write reverts it to those bytes and zeros
/// after them.
fn first_zero_sector(bytes: &[u8], from: usize, to: usize) -> Option<usize> {
    let to = to.min(bytes.len());
    if from >= to {
        return None;
    }
    let first = from / SECTOR_BYTES;
    let last = (to - 1) / SECTOR_BYTES;
    (first..=last).find_map(|sector| {
        let start = (sector * SECTOR_BYTES).max(from);
        let end = ((sector + 1) * SECTOR_BYTES).min(bytes.len());
        bytes[start..end].iter().all(|&b| b == 0).then_some(start)
    })
}

/// Why a log cannot be replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayError {
    /// An entry does not follow the one before it.
    Gap { expected: u64, found: u64 },
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::Gap { expected, found } => write!(
                f,
                "the raft log skips from entry {} to entry {found}",
                expected - 1
            ),
        }
    }
}

/// The log as replay leaves it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    /// The entry the log starts after: index and term (0, 0 for a log
    /// that was never compacted).
    pub start: (u64, u64),
    /// Entries after `start`, by consecutive index, encoded.
    pub entries: Vec<(u64, Vec<u8>)>,
    /// The last hard state recorded, encoded.
    pub hard_state: Option<Vec<u8>>,
    /// A snapshot install started and did not end.
    pub installing: bool,
}

/// The log's start once `record` is replayed after records that left it
/// at `start`: fold it over a log's records to learn the start they end
/// with.
pub fn final_start_after(start: u64, record: &Record<'_>) -> u64 {
    match record {
        Record::Compact { index, .. } | Record::Snapshot { index, .. } => *index,
        _ => start,
    }
}

impl Replayed {
    /// The index of the last entry, or of the start when there is none.
    pub fn last_index(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.start.0, |(index, _)| *index)
    }

    /// Replays a log's records, oldest first. Segments before the first
    /// one given may have been removed once the log's start passed their
    /// entries; so the start the records end with is known first, and
    /// entries at or before it are not needed to follow one another.
    pub fn replay(records: &[Record<'_>]) -> Result<Replayed, ReplayError> {
        let final_start = records.iter().fold(0, final_start_after);
        let mut replayed = Replayed::default();
        for record in records {
            replayed.apply_record(record, final_start)?;
        }
        Ok(replayed)
    }

    /// Replays one record onto the log, for a caller that reads the
    /// records a segment at a time: `final_start` is what
    /// [`final_start_after`] gives over every record of the log.
    pub fn apply_record(
        &mut self,
        record: &Record<'_>,
        final_start: u64,
    ) -> Result<(), ReplayError> {
        match *record {
            Record::Entry { index, encoded } => {
                // Even an entry the log no longer needs replaced the
                // entries after it when it was written.
                let kept = self.entries.partition_point(|(i, _)| *i < index);
                self.entries.truncate(kept);
                let floor = self.start.0.max(final_start);
                if index <= floor {
                    return Ok(());
                }
                let expected = self.entries.last().map_or(floor, |(i, _)| *i) + 1;
                if index != expected {
                    return Err(ReplayError::Gap {
                        expected,
                        found: index,
                    });
                }
                self.entries.push((index, encoded.to_vec()));
            }
            Record::HardState(encoded) => self.hard_state = Some(encoded.to_vec()),
            Record::Compact { index, term } => {
                let dropped = self.entries.partition_point(|(i, _)| *i <= index);
                self.entries.drain(..dropped);
                self.start = (index, term);
            }
            Record::Snapshot { index, term } => {
                self.entries.clear();
                self.start = (index, term);
            }
            Record::Installing(on) => self.installing = on,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What a test log does, before it is framed.
    #[derive(Debug, Clone)]
    enum Op {
        /// Appends `count` entries at `back` before the end (a shorter
        /// `back` overwrites a tail, as a new leader's append does).
        Append {
            back: u64,
            count: u64,
            term: u64,
        },
        HardState(u64),
        Compact {
            keep: u64,
        },
        Snapshot {
            ahead: u64,
            term: u64,
        },
        Installing(bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..3u64, 1..5u64, 1..4u64).prop_map(|(back, count, term)| Op::Append { back, count, term }),
            1 => (0..1000u64).prop_map(Op::HardState),
            1 => (0..4u64).prop_map(|keep| Op::Compact { keep }),
            1 => (0..5u64, 1..4u64).prop_map(|(ahead, term)| Op::Snapshot { ahead, term }),
            1 => any::<bool>().prop_map(Op::Installing),
        ]
    }

    /// Turns ops into the records they write, with the model's expected
    /// state after each record.
    fn records_of(ops: &[Op]) -> Vec<(Vec<u8>, Replayed)> {
        let mut model = Replayed::default();
        let mut out = Vec::new();
        let mut push =
            |model: &mut Replayed, record: Record<'_>, effect: &dyn Fn(&mut Replayed)| {
                effect(model);
                let mut bytes = Vec::new();
                record.encode(7, &mut bytes);
                out.push((bytes, model.clone()));
            };
        for op in ops {
            match *op {
                Op::Append { back, count, term } => {
                    let first = (model.last_index() + 1)
                        .saturating_sub(back)
                        .max(model.start.0 + 1);
                    for index in first..first + count {
                        let encoded = format!("{index}@{term}").into_bytes();
                        let entry = (index, encoded.clone());
                        push(
                            &mut model,
                            Record::Entry {
                                index,
                                encoded: &encoded,
                            },
                            &|m| {
                                m.entries.retain(|(i, _)| *i < index);
                                m.entries.push(entry.clone());
                            },
                        );
                    }
                }
                Op::HardState(commit) => {
                    let encoded = commit.to_le_bytes();
                    push(&mut model, Record::HardState(&encoded), &|m| {
                        m.hard_state = Some(encoded.to_vec())
                    });
                }
                Op::Compact { keep } => {
                    let index = model.last_index().saturating_sub(keep).max(model.start.0);
                    let term = index % 5;
                    push(&mut model, Record::Compact { index, term }, &|m| {
                        m.entries.retain(|(i, _)| *i > index);
                        m.start = (index, term);
                    });
                }
                Op::Snapshot { ahead, term } => {
                    let index = model.last_index() + ahead;
                    push(&mut model, Record::Snapshot { index, term }, &|m| {
                        m.entries.clear();
                        m.start = (index, term);
                    });
                }
                Op::Installing(on) => {
                    push(&mut model, Record::Installing(on), &|m| m.installing = on);
                }
            }
        }
        out
    }

    /// Where the last record that ends at or before byte `at` ends, and
    /// the log as of that record.
    fn whole_records_before(written: &[(Vec<u8>, Replayed)], at: usize) -> (usize, Replayed) {
        let mut offset = 0;
        let mut expected = Replayed::default();
        for (record, after) in written {
            if offset + record.len() > at {
                break;
            }
            offset += record.len();
            expected = after.clone();
        }
        (offset, expected)
    }

    fn replay(seq: u64, bytes: &[u8]) -> (Replayed, SegmentEnd) {
        let (records, end) = read_segment(seq, bytes);
        let replayed = Replayed::replay(&records).expect("a log written in order replays");
        (replayed, end)
    }

    proptest! {
        #[test]
        fn a_written_log_replays_to_what_was_written(ops in prop::collection::vec(op(), 0..60)) {
            let written = records_of(&ops);
            let bytes: Vec<u8> = written.iter().flat_map(|(b, _)| b.clone()).collect();
            let expected = written.last().map(|(_, m)| m.clone()).unwrap_or_default();
            let mut zero_filled = bytes.clone();
            zero_filled.resize(bytes.len() + 100, 0);
            let end = SegmentEnd::Clean { offset: bytes.len() };
            prop_assert_eq!(replay(7, &bytes), (expected.clone(), end));
            prop_assert_eq!(replay(7, &zero_filled), (expected, end));
        }

        #[test]
        fn a_torn_log_replays_to_its_last_whole_record(
            ops in prop::collection::vec(op(), 1..40),
            cut in any::<prop::sample::Index>(),
        ) {
            let written = records_of(&ops);
            let bytes: Vec<u8> = written.iter().flat_map(|(b, _)| b.clone()).collect();
            let cut = cut.index(bytes.len());
            let (offset, expected) = whole_records_before(&written, cut);
            let (replayed, end) = replay(7, &bytes[..cut]);
            prop_assert_eq!(replayed, expected);
            prop_assert_eq!(end, if offset == cut { SegmentEnd::Clean { offset } } else { SegmentEnd::Torn { offset } });
        }

        /// A crash keeps each sector written after the last sync or loses
        /// it whole, in any order: what it leaves always reads as a log
        /// that ends early, never as damage.
        #[test]
        fn sectors_a_crash_lost_read_as_a_torn_end_never_as_damage(
            ops in prop::collection::vec(op(), 1..80),
            synced in any::<prop::sample::Index>(),
            lost in prop::collection::vec(any::<bool>(), 64),
        ) {
            let written = records_of(&ops);
            let mut bytes: Vec<u8> = written.iter().flat_map(|(b, _)| b.clone()).collect();
            let written_len = bytes.len();
            bytes.resize((written_len / SECTOR_BYTES + 2) * SECTOR_BYTES, 0);
            let (synced_offset, _) = whole_records_before(&written, synced.index(written_len + 1));
            let mut any_lost = false;
            for (sector, chunk) in bytes.chunks_mut(SECTOR_BYTES).enumerate() {
                let start = sector * SECTOR_BYTES;
                if start + SECTOR_BYTES <= synced_offset || !lost[sector % lost.len()] {
                    continue;
                }
                // A lost sector holds what it held at the last sync.
                let keep = synced_offset.saturating_sub(start);
                chunk[keep..].fill(0);
                any_lost = true;
            }
            let (records, end) = read_segment(7, &bytes);
            let (SegmentEnd::Clean { offset } | SegmentEnd::Torn { offset }) = end else {
                return Err(TestCaseError::fail(format!("a crash read as {end:?}")));
            };
            prop_assert!(offset >= synced_offset);
            let replayed = Replayed::replay(&records).expect("a prefix replays");
            let (_, expected) = whole_records_before(&written, offset);
            prop_assert_eq!(&replayed, &expected);
            if !any_lost {
                prop_assert_eq!(offset, written_len);
            }
        }

        /// A bit that changed in a whole record is damage, never a torn
        /// end, when another record follows it. In the last record it may
        /// read as either: a length grown past the end is what a cut write
        /// looks like.
        #[test]
        fn a_flipped_bit_before_the_last_record_is_damage(
            ops in prop::collection::vec(op(), 1..40),
            at in any::<prop::sample::Index>(),
            bit in 0..8u8,
        ) {
            let written = records_of(&ops);
            let mut bytes: Vec<u8> = written.iter().flat_map(|(b, _)| b.clone()).collect();
            let last_record_at = bytes.len() - written.last().expect("one record").0.len();
            let at = at.index(bytes.len());
            bytes[at] ^= 1 << bit;
            let (offset, expected) = whole_records_before(&written, at);
            let (replayed, end) = replay(7, &bytes);
            prop_assert_eq!(replayed, expected);
            if offset < last_record_at {
                prop_assert_eq!(end, SegmentEnd::Damaged { offset });
            } else {
                prop_assert!(end == SegmentEnd::Damaged { offset } || end == SegmentEnd::Torn { offset }, "{:?}", end);
            }
        }
    }

    #[test]
    fn a_changed_byte_in_a_preallocated_segment_is_damage_wherever_it_is() {
        let mut bytes = Vec::new();
        let mut starts = Vec::new();
        for index in 1..=3000u64 {
            starts.push(bytes.len());
            let encoded = format!("entry {index} with a value").into_bytes();
            Record::Entry {
                index,
                encoded: &encoded,
            }
            .encode(9, &mut bytes);
        }
        let last_record_at = *starts.last().expect("3000 records");
        bytes.resize(bytes.len() + 64 * 1024, 0);
        for at in (0..last_record_at).step_by(97) {
            for change in [0x01, 0x80, 0xff] {
                let mut damaged = bytes.clone();
                damaged[at] ^= change;
                let (records, end) = read_segment(9, &damaged);
                let position = starts.partition_point(|&start| start <= at) - 1;
                assert_eq!(
                    end,
                    SegmentEnd::Damaged {
                        offset: starts[position]
                    },
                    "byte {at} changed by {change:#x}"
                );
                assert_eq!(records.len(), position);
            }
        }
    }

    /// A torn record whose payload repeats a byte that reads as a record
    /// kind gives the search for a following record many candidates; it
    /// still finds the record torn, and quickly.
    #[test]
    fn a_torn_record_of_repeated_bytes_is_torn() {
        let mut bytes = Vec::new();
        Record::Compact { index: 0, term: 0 }.encode(1, &mut bytes);
        let start = bytes.len();
        let mut torn = Vec::new();
        let payload = vec![KIND_COMPACT; 100_000];
        Record::Entry {
            index: 1,
            encoded: &payload,
        }
        .encode(1, &mut torn);
        torn.truncate(50 * SECTOR_BYTES - start);
        bytes.extend_from_slice(&torn);
        bytes.resize(64 * 1024 * 1024, 0);
        let (records, end) = read_segment(1, &bytes);
        assert_eq!(records.len(), 1);
        assert_eq!(end, SegmentEnd::Torn { offset: start });
    }

    #[test]
    fn a_record_of_another_segment_is_not_taken() {
        let mut bytes = Vec::new();
        Record::HardState(b"state").encode(3, &mut bytes);
        assert_eq!(read_segment(3, &bytes).0, vec![Record::HardState(b"state")]);
        assert_eq!(
            read_segment(4, &bytes),
            (Vec::new(), SegmentEnd::Damaged { offset: 0 })
        );
    }

    #[test]
    fn an_entry_past_the_end_is_a_gap() {
        let records = [
            Record::Entry {
                index: 1,
                encoded: b"a",
            },
            Record::Entry {
                index: 3,
                encoded: b"c",
            },
        ];
        let error = Replayed::replay(&records).unwrap_err();
        assert_eq!(
            error,
            ReplayError::Gap {
                expected: 2,
                found: 3
            }
        );
        assert_eq!(
            error.to_string(),
            "the raft log skips from entry 1 to entry 3"
        );
    }

    proptest! {
        /// What a log replays to does not depend on records it no longer
        /// needs: the segments whose entries its final start has passed.
        #[test]
        fn dropping_what_the_final_start_passed_replays_the_same(
            ops in prop::collection::vec(op(), 1..60),
            cut in any::<prop::sample::Index>(),
        ) {
            let written = records_of(&ops);
            let expected = written.last().map(|(_, m)| m.clone()).unwrap_or_default();
            let bytes: Vec<Vec<u8>> = written.iter().map(|(b, _)| b.clone()).collect();
            let records: Vec<Record<'_>> = bytes.iter().map(|b| read_segment(7, b).0.remove(0)).collect();
            // A segment may go once every entry in it (and before it) is
            // at or before the final start; the next one opens with a
            // checkpoint of the state as it was then.
            let cut = cut.index(records.len() + 1);
            let passed = records[..cut].iter().all(|r| match r {
                Record::Entry { index, .. } => *index <= expected.start.0,
                _ => true,
            });
            prop_assume!(passed && cut > 0);
            let before = &written[cut - 1].1;
            let mut checkpoint_bytes = Vec::new();
            if let Some(hard_state) = &before.hard_state {
                Record::HardState(hard_state).encode(7, &mut checkpoint_bytes);
            }
            Record::Compact { index: before.start.0, term: before.start.1 }.encode(7, &mut checkpoint_bytes);
            if before.installing {
                Record::Installing(true).encode(7, &mut checkpoint_bytes);
            }
            let mut kept = read_segment(7, &checkpoint_bytes).0;
            kept.extend(records[cut..].iter().cloned());
            prop_assert_eq!(Replayed::replay(&kept), Ok(expected));
        }
    }
}
