//! The raft log's write-ahead log: entries, hard state, the log's start
//! and the snapshot-install marker, appended as records (`e2d_core::wal`)
//! to segment files in `<data-dir>/wal`, and synced once per `Ready`.
//!
//! The log owns its durability: the state machine's database is synced
//! only before the log drops applied entries ([`Wal::compact`]'s caller
//! syncs it first), since until then the log can replay what a crash took
//! from it.
//!
//! Each segment starts with a checkpoint (hard state, start, install
//! marker), so the segments before it can be removed once the log's
//! durable start has passed every entry they hold.

use std::collections::BTreeMap;

use e2d_core::storage::StorageError;
use e2d_core::wal::{read_segment, Record, Replayed, SegmentEnd};
use raft::eraftpb::{Entry, HardState};

use super::codec;
use crate::storage::{SegmentDir, SegmentFile};

/// A segment is preallocated to this size; records past it go to the next.
#[cfg(not(madsim))]
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Simulated disks are memory: smaller segments, so runs rotate them.
#[cfg(madsim)]
const SEGMENT_BYTES: u64 = 64 * 1024;

/// Framed records held before they are written even without a sync.
const PENDING_BYTES_MAX: usize = 1024 * 1024;

fn wal_error(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError(format!("raft log: {what}: {e}"))
}

pub struct Wal {
    dir: SegmentDir,
    current: SegmentFile,
    current_seq: u64,
    /// The highest entry index each segment holds that the log may still
    /// need, by sequence number; the current segment included.
    last_index_by_seq: BTreeMap<u64, u64>,
    /// Records framed for the current segment, not yet written.
    pending: Vec<u8>,
    /// Scratch space for an entry's encoding.
    scratch: Vec<u8>,
    /// What the next segment's checkpoint records.
    hard_state: Vec<u8>,
    start: (u64, u64),
    installing: bool,
    /// The log's start as of the last sync.
    synced_start_index: u64,
    /// Where a segment ends and the next begins.
    segment_bytes: u64,
}

impl Wal {
    /// Opens the log in `path` (creating an empty one) and replays it. A
    /// write the last crash interrupted is cut off.
    pub fn open(path: &std::path::Path) -> Result<(Wal, Replayed), StorageError> {
        Self::open_with(path, SEGMENT_BYTES)
    }

    fn open_with(
        path: &std::path::Path,
        segment_bytes: u64,
    ) -> Result<(Wal, Replayed), StorageError> {
        let dir = SegmentDir::open(path).map_err(|e| wal_error("opening its directory", e))?;
        let seqs = dir.list().map_err(|e| wal_error("listing segments", e))?;
        let contents = seqs
            .iter()
            .map(|&seq| {
                dir.read(seq)
                    .map_err(|e| wal_error(&format!("reading segment {seq}"), e))
            })
            .collect::<Result<Vec<Vec<u8>>, _>>()?;
        let mut records = Vec::new();
        let mut last_index_by_seq = BTreeMap::new();
        let mut reuse = None;
        for (position, (&seq, bytes)) in seqs.iter().zip(&contents).enumerate() {
            let (segment_records, end) = read_segment(seq, bytes);
            let mut last_index = 0;
            for record in &segment_records {
                match record {
                    Record::Entry { index, .. } => last_index = last_index.max(*index),
                    Record::Snapshot { .. } => {
                        last_index_by_seq.values_mut().for_each(|i| *i = 0);
                        last_index = 0;
                    }
                    _ => {}
                }
            }
            records.extend(segment_records);
            last_index_by_seq.insert(seq, last_index);
            let is_last = position + 1 == seqs.len();
            let valid_bytes = match end {
                SegmentEnd::Clean { offset } => offset,
                SegmentEnd::Damaged { offset } if is_last => {
                    tracing::warn!(
                        segment = seq,
                        offset,
                        "the raft log ends in a write a crash interrupted; cut it off"
                    );
                    offset
                }
                SegmentEnd::Damaged { offset } => {
                    return Err(StorageError(format!(
                        "the raft log's segment {seq} is damaged at byte {offset}, before later segments: this member's log cannot be trusted; remove its data dir, remove the member (etcdctl member remove) and add it again"
                    )));
                }
            };
            if is_last {
                // Appends continue in the last segment only if nothing but
                // zeros follows its records: bytes of writes a crash cut
                // short could otherwise be read as records later.
                let tail_is_zero = bytes[valid_bytes..].iter().all(|&b| b == 0);
                if tail_is_zero && (valid_bytes as u64) < segment_bytes {
                    reuse = Some((seq, valid_bytes as u64));
                } else {
                    dir.truncate(seq, valid_bytes as u64)
                        .map_err(|e| wal_error(&format!("cutting segment {seq}"), e))?;
                }
            }
        }
        let replayed = Replayed::replay(&records).map_err(|e| wal_error("replaying", e))?;
        drop(records);
        let hard_state = replayed.hard_state.clone().unwrap_or_default();
        let (current, current_seq) = match reuse {
            Some((seq, offset)) => (
                dir.reopen(seq, offset)
                    .map_err(|e| wal_error(&format!("opening segment {seq}"), e))?,
                seq,
            ),
            None => {
                let seq = seqs.last().map_or(1, |last| last + 1);
                let file = dir
                    .create(seq, segment_bytes)
                    .map_err(|e| wal_error(&format!("creating segment {seq}"), e))?;
                last_index_by_seq.insert(seq, 0);
                (file, seq)
            }
        };
        let mut wal = Wal {
            dir,
            current,
            current_seq,
            last_index_by_seq,
            pending: Vec::new(),
            scratch: Vec::new(),
            hard_state,
            start: replayed.start,
            installing: replayed.installing,
            synced_start_index: replayed.start.0,
            segment_bytes,
        };
        // A segment that holds nothing yet may lack its checkpoint (a
        // crash right after it was created): it gets one before anything
        // else, since the segments before it may go.
        if reuse.is_none_or(|(_, offset)| offset == 0) {
            wal.push_checkpoint();
            wal.sync()?;
        }
        Ok((wal, replayed))
    }

    /// Appends entries; an entry replaces every entry at or after its
    /// index.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        for entry in entries {
            self.scratch.clear();
            codec::encode_entry_into(entry, &mut self.scratch);
            let scratch = std::mem::take(&mut self.scratch);
            self.push(&Record::Entry {
                index: entry.index,
                encoded: &scratch,
            })?;
            self.scratch = scratch;
            let last = self
                .last_index_by_seq
                .get_mut(&self.current_seq)
                .expect("the current segment is listed");
            *last = (*last).max(entry.index);
        }
        Ok(())
    }

    pub fn set_hard_state(&mut self, state: &HardState) -> Result<(), StorageError> {
        let encoded = codec::encode_hard_state(state);
        // A segment this push opens checkpoints the previous hard state,
        // then holds this record.
        self.push(&Record::HardState(&encoded))?;
        self.hard_state = encoded;
        Ok(())
    }

    /// Drops the entries up to `index` (of `term`). The caller has made
    /// the state machine that applied them durable.
    pub fn compact(&mut self, index: u64, term: u64) -> Result<(), StorageError> {
        assert!(index >= self.start.0, "the log's start only moves forward");
        self.start = (index, term);
        self.push(&Record::Compact { index, term })
    }

    /// Replaces the whole log by a snapshot's position.
    pub fn snapshot(&mut self, index: u64, term: u64) -> Result<(), StorageError> {
        self.start = (index, term);
        self.push(&Record::Snapshot { index, term })?;
        // Whatever earlier segments hold is gone from the log.
        self.last_index_by_seq.values_mut().for_each(|i| *i = 0);
        Ok(())
    }

    pub fn set_installing(&mut self, installing: bool) -> Result<(), StorageError> {
        self.installing = installing;
        self.push(&Record::Installing(installing))
    }

    /// Writes what was appended and makes it durable; then removes the
    /// segments the durable start has moved past.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.write_and_sync_current()?;
        self.synced_start_index = self.start.0;
        self.remove_passed_segments();
        Ok(())
    }

    fn remove_passed_segments(&mut self) {
        while let Some((&seq, &last_index)) = self.last_index_by_seq.first_key_value() {
            if seq == self.current_seq || last_index > self.synced_start_index {
                break;
            }
            if let Err(e) = self.dir.remove(seq) {
                tracing::warn!(segment = seq, error = %e, "cannot remove a passed raft log segment; will retry");
                break;
            }
            self.last_index_by_seq.remove(&seq);
        }
    }

    /// Frames `record` for the current segment, first moving to a new
    /// segment if the record would not fit.
    fn push(&mut self, record: &Record<'_>) -> Result<(), StorageError> {
        let before = self.pending.len();
        record.encode(self.current_seq, &mut self.pending);
        let used = self.current.offset() + self.pending.len() as u64;
        if used > self.segment_bytes && self.current.offset() + before as u64 > 0 {
            self.pending.truncate(before);
            self.rotate()?;
            record.encode(self.current_seq, &mut self.pending);
        }
        if self.pending.len() > PENDING_BYTES_MAX {
            self.write_pending()?;
        }
        Ok(())
    }

    /// Ends the current segment durably and starts the next one with a
    /// checkpoint.
    fn rotate(&mut self) -> Result<(), StorageError> {
        self.write_and_sync_current()?;
        let seq = self.current_seq + 1;
        self.current = self
            .dir
            .create(seq, self.segment_bytes)
            .map_err(|e| wal_error(&format!("creating segment {seq}"), e))?;
        self.current_seq = seq;
        self.last_index_by_seq.insert(seq, 0);
        self.push_checkpoint();
        Ok(())
    }

    /// The records that let a segment be read without the ones before it.
    fn push_checkpoint(&mut self) {
        let seq = self.current_seq;
        if !self.hard_state.is_empty() {
            Record::HardState(&self.hard_state).encode(seq, &mut self.pending);
        }
        let (index, term) = self.start;
        Record::Compact { index, term }.encode(seq, &mut self.pending);
        Record::Installing(self.installing).encode(seq, &mut self.pending);
    }

    fn write_and_sync_current(&mut self) -> Result<(), StorageError> {
        self.write_pending()?;
        self.current
            .sync()
            .map_err(|e| wal_error(&format!("syncing segment {}", self.current_seq), e))
    }

    fn write_pending(&mut self) -> Result<(), StorageError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.current
            .write(&self.pending)
            .map_err(|e| wal_error(&format!("writing segment {}", self.current_seq), e))?;
        self.pending.clear();
        Ok(())
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; 100],
            ..Default::default()
        }
    }

    /// A log of 1 KiB segments holding entries `1..=last`, synced after
    /// each when `sync_each`, else once at the end.
    fn small_segments(dir: &std::path::Path, last: u64, sync_each: bool) -> Wal {
        let (mut wal, _) = Wal::open_with(dir, 1024).unwrap();
        for index in 1..=last {
            wal.append(&[entry(index, 1)]).unwrap();
            if sync_each {
                wal.sync().unwrap();
            }
        }
        wal.sync().unwrap();
        wal
    }

    fn indexes(replayed: &Replayed) -> Vec<u64> {
        replayed.entries.iter().map(|(index, _)| *index).collect()
    }

    fn hard_state(commit: u64) -> HardState {
        HardState {
            term: 2,
            vote: 1,
            commit,
        }
    }

    #[test]
    fn a_synced_log_reopens_as_written_and_continues_its_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, replayed) = Wal::open(dir.path()).unwrap();
        assert_eq!(replayed, Replayed::default());
        wal.append(&(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .unwrap();
        // A new leader's shorter append replaces the tail.
        wal.append(&[entry(4, 2)]).unwrap();
        wal.set_hard_state(&hard_state(3)).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (mut wal, replayed) = Wal::open(dir.path()).unwrap();
        assert_eq!(indexes(&replayed), vec![1, 2, 3, 4]);
        assert_eq!(
            replayed.hard_state,
            Some(codec::encode_hard_state(&hard_state(3)))
        );
        wal.append(&[entry(5, 2)]).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_, replayed) = Wal::open(dir.path()).unwrap();
        assert_eq!(indexes(&replayed), vec![1, 2, 3, 4, 5]);
        assert_eq!(
            SegmentDir::open(dir.path()).unwrap().list().unwrap(),
            vec![1]
        );
    }

    #[test]
    fn segments_rotate_and_go_once_the_start_passes_them() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open_with(dir.path(), 1024).unwrap();
        for index in 1..=40 {
            wal.append(&[entry(index, 1)]).unwrap();
            wal.set_hard_state(&hard_state(index)).unwrap();
            wal.sync().unwrap();
        }
        let segments = SegmentDir::open(dir.path()).unwrap();
        assert!(segments.list().unwrap().len() > 4, "{:?}", segments.list());
        wal.compact(30, 1).unwrap();
        wal.sync().unwrap();
        let left = segments.list().unwrap();
        assert!(left.len() <= 3, "{left:?}");
        drop(wal);
        let (_, replayed) = Wal::open_with(dir.path(), 1024).unwrap();
        assert_eq!(replayed.start, (30, 1));
        assert_eq!(indexes(&replayed), (31..=40).collect::<Vec<_>>());
        assert_eq!(
            replayed.hard_state,
            Some(codec::encode_hard_state(&hard_state(40)))
        );
    }

    #[test]
    fn a_snapshot_empties_the_log_and_frees_every_earlier_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = small_segments(dir.path(), 30, false);
        wal.set_installing(true).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (mut wal, replayed) = Wal::open_with(dir.path(), 1024).unwrap();
        assert!(replayed.installing);
        wal.snapshot(100, 3).unwrap();
        wal.set_installing(false).unwrap();
        wal.sync().unwrap();
        assert_eq!(
            SegmentDir::open(dir.path()).unwrap().list().unwrap().len(),
            1
        );
        wal.append(&[entry(101, 3)]).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_, replayed) = Wal::open_with(dir.path(), 1024).unwrap();
        assert!(!replayed.installing);
        assert_eq!(replayed.start, (100, 3));
        assert_eq!(indexes(&replayed), vec![101]);
    }

    #[test]
    fn a_torn_write_is_cut_off_and_appends_go_on_in_a_new_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(&[entry(1, 1), entry(2, 1)]).unwrap();
        wal.sync().unwrap();
        let end = wal.current.offset();
        drop(wal);
        // Half a record, then bytes a later write left past it.
        let segments = SegmentDir::open(dir.path()).unwrap();
        let mut torn = Vec::new();
        Record::Entry {
            index: 3,
            encoded: b"lost",
        }
        .encode(1, &mut torn);
        torn.truncate(torn.len() / 2);
        segments.reopen(1, end).unwrap().write(&torn).unwrap();
        segments
            .reopen(1, end + 4096)
            .unwrap()
            .write(&[7; 64])
            .unwrap();
        let (mut wal, replayed) = Wal::open(dir.path()).unwrap();
        assert_eq!(indexes(&replayed), vec![1, 2]);
        assert_eq!(segments.list().unwrap(), vec![1, 2]);
        assert_eq!(segments.read(1).unwrap().len() as u64, end);
        wal.append(&[entry(3, 1)]).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_, replayed) = Wal::open(dir.path()).unwrap();
        assert_eq!(indexes(&replayed), vec![1, 2, 3]);
    }

    #[test]
    fn a_segment_left_empty_by_a_crash_gets_its_checkpoint_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open_with(dir.path(), 1024).unwrap();
        wal.set_hard_state(&hard_state(5)).unwrap();
        // Enough to move to segment 2, whose checkpoint is never written.
        for index in 1..=12 {
            wal.append(&[entry(index, 1)]).unwrap();
        }
        let segments = SegmentDir::open(dir.path()).unwrap();
        assert_eq!(segments.list().unwrap(), vec![1, 2]);
        drop(wal);
        let (_, replayed) = Wal::open_with(dir.path(), 1024).unwrap();
        let expected = codec::encode_hard_state(&hard_state(5));
        assert_eq!(replayed.hard_state.as_ref(), Some(&expected));
        let bytes = segments.read(2).unwrap();
        let (records, _) = read_segment(2, &bytes);
        assert_eq!(records.first(), Some(&Record::HardState(&expected)));
    }

    #[test]
    fn damage_before_the_last_segment_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(small_segments(dir.path(), 20, true));
        let segments = SegmentDir::open(dir.path()).unwrap();
        segments.reopen(1, 40).unwrap().write(&[0xff; 8]).unwrap();
        let error = Wal::open_with(dir.path(), 1024).err().unwrap();
        assert!(
            error.0.contains("segment 1 is damaged at byte"),
            "{}",
            error.0
        );
    }
}
