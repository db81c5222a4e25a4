//! The snapshot stream: every table of the backend, as e2d's own record
//! format, padded to 512 bytes and closed by a SHA-256 of all before it,
//! the trailer `etcdctl snapshot save` expects.
//!
//! Layout: magic, then records `[table u8][key_len u32][key][value_len u32]
//! [value]` (big-endian lengths), then the end byte, zero padding up to a
//! multiple of 512 bytes, then the 32-byte digest.

use std::io::Write;

use e2d_core::storage::{StorageError, Table};
use sha2::{Digest, Sha256};

use crate::storage::PointInTime;

pub const SNAPSHOT_MAGIC: &[u8; 8] = b"E2DSNAP\x01";
const END_OF_RECORDS: u8 = 0xff;
const PAD_TO_BYTES: usize = 512;

fn table_tag(table: Table) -> u8 {
    match table {
        Table::Kv => 1,
        Table::Lease => 2,
        Table::Meta => 3,
    }
}

/// Writes the snapshot of `view` to `out`; returns the bytes written.
pub fn write_snapshot(view: &PointInTime, out: &mut impl Write) -> Result<u64, StorageError> {
    let io = |e: std::io::Error| StorageError(format!("writing snapshot: {e}"));
    let mut writer = HashingWriter {
        inner: out,
        hasher: Sha256::new(),
        written_bytes: 0,
    };
    writer.write_all(SNAPSHOT_MAGIC).map_err(io)?;
    view.visit_all(&mut |table, key, value| {
        let key_len = u32::try_from(key.len()).map_err(|_| StorageError("key too long".into()))?;
        let value_len =
            u32::try_from(value.len()).map_err(|_| StorageError("value too long".into()))?;
        writer.write_all(&[table_tag(table)]).map_err(io)?;
        writer.write_all(&key_len.to_be_bytes()).map_err(io)?;
        writer.write_all(key).map_err(io)?;
        writer.write_all(&value_len.to_be_bytes()).map_err(io)?;
        writer.write_all(value).map_err(io)?;
        Ok(())
    })?;
    writer.write_all(&[END_OF_RECORDS]).map_err(io)?;
    let padding = (PAD_TO_BYTES - writer.written_bytes as usize % PAD_TO_BYTES) % PAD_TO_BYTES;
    writer.write_all(&vec![0u8; padding]).map_err(io)?;
    let digest = writer.hasher.finalize();
    writer.inner.write_all(&digest).map_err(io)?;
    writer.inner.flush().map_err(io)?;
    Ok(writer.written_bytes + digest.len() as u64)
}

struct HashingWriter<'a, W: Write> {
    inner: &'a mut W,
    hasher: Sha256,
    written_bytes: u64,
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written_bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
