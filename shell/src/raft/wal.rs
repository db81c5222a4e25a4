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
use e2d_core::wal::{final_start_after, read_segment, Record, Replayed, SegmentEnd};
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
    /// write the last crash interrupted is cut off; damage is refused.
    pub fn open(path: &std::path::Path) -> Result<(Wal, Replayed), StorageError> {
        Self::open_with(path, SEGMENT_BYTES)
    }

    fn open_with(
        path: &std::path::Path,
        segment_bytes: u64,
    ) -> Result<(Wal, Replayed), StorageError> {
        let dir = SegmentDir::open(path).map_err(|e| wal_error("opening its directory", e))?;
        let seqs = dir.list().map_err(|e| wal_error("listing segments", e))?;
        let survey = survey_segments(&dir, path, &seqs)?;
        let replayed = replay_segments(&dir, &seqs, survey.final_start)?;
        let mut last_index_by_seq = survey.last_index_by_seq;
        let reuse = match survey.last_end {
            None => None,
            Some((seq, valid_bytes, tail_is_zero)) => {
                // Appends continue in the last segment only if nothing but
                // zeros follows its records: bytes of writes a crash cut
                // short could otherwise be read as records later.
                if tail_is_zero && valid_bytes < segment_bytes {
                    Some((seq, valid_bytes))
                } else {
                    dir.truncate(seq, valid_bytes)
                        .map_err(|e| wal_error(&format!("cutting segment {seq}"), e))?;
                    None
                }
            }
        };
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
        assert!(
            entries
                .windows(2)
                .all(|pair| pair[1].index == pair[0].index + 1),
            "entries appended to the raft log follow one another"
        );
        if let Some(first) = entries.first() {
            assert!(
                first.index > self.start.0,
                "entry {} appended at or before the log's start {}",
                first.index,
                self.start.0
            );
        }
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

/// What a first read of the segments learns, one segment in memory at a
/// time, before any is replayed.
struct Survey {
    /// The log's start as its last record that moves it leaves it.
    final_start: u64,
    last_index_by_seq: BTreeMap<u64, u64>,
    /// The last segment: its sequence number, where its records end and
    /// whether nothing but zeros follows them.
    last_end: Option<(u64, u64, bool)>,
}

fn read_segment_file(dir: &SegmentDir, seq: u64) -> Result<Vec<u8>, StorageError> {
    dir.read(seq)
        .map_err(|e| wal_error(&format!("reading segment {seq}"), e))
}

/// Reads every segment once: where each ends, which entries it holds and
/// the log's final start. Damage anywhere, and a torn write before the
/// last segment (each was synced whole before the next was made), is
/// refused with nothing on disk changed.
fn survey_segments(
    dir: &SegmentDir,
    path: &std::path::Path,
    seqs: &[u64],
) -> Result<Survey, StorageError> {
    let mut survey = Survey {
        final_start: 0,
        last_index_by_seq: BTreeMap::new(),
        last_end: None,
    };
    for (position, &seq) in seqs.iter().enumerate() {
        let bytes = read_segment_file(dir, seq)?;
        let (records, end) = read_segment(seq, &bytes);
        let mut last_index = 0;
        for record in &records {
            survey.final_start = final_start_after(survey.final_start, record);
            match record {
                Record::Entry { index, .. } => last_index = last_index.max(*index),
                Record::Snapshot { .. } => {
                    survey.last_index_by_seq.values_mut().for_each(|i| *i = 0);
                    last_index = 0;
                }
                _ => {}
            }
        }
        survey.last_index_by_seq.insert(seq, last_index);
        let is_last = position + 1 == seqs.len();
        let file = || path.join(crate::storage::segment_file_name(seq));
        let valid_bytes = match end {
            SegmentEnd::Clean { offset } => offset,
            SegmentEnd::Torn { offset } if is_last => {
                tracing::warn!(
                    segment = %file().display(),
                    offset,
                    "the raft log ends in a write a crash interrupted before it was synced; cutting it off"
                );
                offset
            }
            SegmentEnd::Torn { offset } => {
                return Err(damaged(
                    &file(),
                    offset,
                    "is cut short, yet later segments follow it",
                ))
            }
            SegmentEnd::Damaged { offset } => {
                return Err(damaged(
                    &file(),
                    offset,
                    "fails its checksum although all of it was written",
                ))
            }
        };
        if is_last {
            let tail_is_zero = bytes[valid_bytes..].iter().all(|&b| b == 0);
            survey.last_end = Some((seq, valid_bytes as u64, tail_is_zero));
        }
    }
    Ok(survey)
}

fn damaged(file: &std::path::Path, offset: usize, fault: &str) -> StorageError {
    StorageError(format!(
        "raft log: the record at byte {offset} of {} {fault}: the file is damaged. {}",
        file.display(),
        crate::storage::DAMAGED_DATA_WAY_OUT
    ))
}

/// Reads the segments a second time, one at a time, and replays their
/// records up to where the survey found them to end.
fn replay_segments(
    dir: &SegmentDir,
    seqs: &[u64],
    final_start: u64,
) -> Result<Replayed, StorageError> {
    let mut replayed = Replayed::default();
    for &seq in seqs {
        let bytes = read_segment_file(dir, seq)?;
        let (records, _) = read_segment(seq, &bytes);
        for record in &records {
            replayed
                .apply_record(record, final_start)
                .map_err(|e| wal_error("replaying", e))?;
        }
    }
    Ok(replayed)
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;
    use e2d_core::wal::SECTOR_BYTES;

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
        // A record whose sectors past the first never reached the disk,
        // then a sector of a later write that did.
        let segments = SegmentDir::open(dir.path()).unwrap();
        let mut torn = Vec::new();
        Record::Entry {
            index: 3,
            encoded: &[3; 2000],
        }
        .encode(1, &mut torn);
        let sector_end = (end as usize / SECTOR_BYTES + 1) * SECTOR_BYTES;
        torn.truncate(sector_end - end as usize);
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

    /// One byte changed inside the written part of the newest segment,
    /// wherever it lands: refused, naming the file and the offset, with
    /// the file left as it was.
    #[test]
    fn a_changed_byte_in_the_newest_segment_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        for index in 1..=300 {
            wal.append(&[entry(index, 1)]).unwrap();
            wal.set_hard_state(&hard_state(index)).unwrap();
        }
        wal.sync().unwrap();
        let end = wal.current.offset() as usize;
        drop(wal);
        let segments = SegmentDir::open(dir.path()).unwrap();
        let file = dir.path().join(crate::storage::segment_file_name(1));
        let original = std::fs::read(&file).unwrap();
        for at in [end / 3, end / 2, end - 200] {
            let mut damaged = original.clone();
            damaged[at] ^= 0x10;
            std::fs::write(&file, &damaged).unwrap();
            let error = Wal::open(dir.path()).err().expect("refused").0;
            assert!(error.contains(&file.display().to_string()), "{error}");
            assert!(error.contains("damaged"), "{error}");
            assert!(error.contains("etcdctl member remove"), "{error}");
            assert_eq!(std::fs::read(&file).unwrap(), damaged, "changed on disk");
            assert_eq!(segments.list().unwrap(), vec![1]);
        }
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
        let file = dir.path().join(crate::storage::segment_file_name(1));
        assert!(
            error.0.contains(&format!(
                "of {} is cut short, yet later segments follow it",
                file.display()
            )) || error
                .0
                .contains(&format!("of {} fails its checksum", file.display())),
            "{}",
            error.0
        );
    }
}
