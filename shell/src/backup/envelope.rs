//! What a stored snapshot looks like around the payload
//! ([`crate::snapshot`]): optional encryption, then optional gzip.
//!
//! ```text
//! stored   = gzip(sealed) | sealed
//! sealed   = magic "E2DSEAL\x01" | key id (8) | IV (16) | ciphertext | tag (32)
//!          | payload
//! ```
//!
//! The ciphertext is the payload under AES-256-CTR; the tag is
//! HMAC-SHA-512/256 over everything before it (magic, key id, IV and
//! ciphertext), so a swapped header fails as surely as a flipped byte.
//! Compression runs after encryption and, when encrypting, at level 0:
//! compressing plaintext would leak its content through the size. Without
//! encryption gzip runs at its fastest level, which keeps most of the gain
//! at several times the speed of its default. Both
//! directions stream in bounded memory; opening writes the payload to a
//! file and checks the tag at the end, so nothing unverified is ever used.

use std::io::{Read, Write};

use aes::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use sha2::Sha512_256;

use super::ca_key::{hex, SnapshotKeys, KEY_ID_BYTES};
use crate::snapshot::SNAPSHOT_MAGIC;

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;
type Tag = Hmac<Sha512_256>;

pub const SEAL_MAGIC: &[u8; 8] = b"E2DSEAL\x01";
const IV_BYTES: usize = 16;
const TAG_BYTES: usize = 32;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Bytes read and written per step of the streams.
const CHUNK_BYTES: usize = 64 * 1024;

/// How a snapshot is stored.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    pub compress: bool,
    pub keys: Option<SnapshotKeys>,
}

/// What opening a stored snapshot found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Layers {
    pub compressed: bool,
    pub encrypted: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot read the snapshot: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "not a snapshot: it starts with neither e2d's magic (snapshot or delta), an etcd database's (bbolt) nor gzip's"
    )]
    NotASnapshot,
    #[error("the snapshot is encrypted; pass the CA key it was encrypted with (--ca-key)")]
    NoKey,
    #[error("the snapshot was encrypted with another CA key (key id {found}, this CA key's is {ours}); pass the CA key it was made with")]
    WrongKey { found: String, ours: String },
    #[error(
        "the snapshot failed authentication: it was changed or cut short after it was written"
    )]
    Tampered,
    #[error("the snapshot is not encrypted, but snapshot encryption is on: refusing a snapshot anyone could have written (turn --snapshot-encryption off to restore it)")]
    Unencrypted,
}

/// A writer that seals what goes through it; [`Sealer::finish`] appends
/// the tag.
struct Sealer<W: Write> {
    inner: W,
    cipher: Aes256Ctr,
    tag: Tag,
    buffer: Vec<u8>,
}

impl<W: Write> Sealer<W> {
    fn new(mut inner: W, keys: &SnapshotKeys, iv: [u8; IV_BYTES]) -> std::io::Result<Self> {
        let mut tag = <Tag as Mac>::new_from_slice(&keys.mac).expect("HMAC takes any key length");
        for part in [&SEAL_MAGIC[..], &keys.key_id, &iv] {
            inner.write_all(part)?;
            tag.update(part);
        }
        Ok(Self {
            inner,
            cipher: Aes256Ctr::new(&keys.cipher.into(), &iv.into()),
            tag,
            buffer: Vec::with_capacity(CHUNK_BYTES),
        })
    }

    fn finish(mut self) -> std::io::Result<W> {
        let tag = self.tag.finalize().into_bytes();
        self.inner.write_all(&tag)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Sealer<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(CHUNK_BYTES);
        self.buffer.clear();
        self.buffer.extend_from_slice(&buf[..n]);
        self.cipher.apply_keystream(&mut self.buffer);
        self.inner.write_all(&self.buffer)?;
        self.tag.update(&self.buffer);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Where the payload goes: straight to the output, or through the
/// sealer and the compressor.
enum Layered<W: Write> {
    Plain(W),
    Sealed(Sealer<W>),
    Compressed(flate2::write::GzEncoder<W>),
    SealedCompressed(Sealer<flate2::write::GzEncoder<W>>),
}

/// A writer of a stored snapshot: write the payload into it, then call
/// [`SnapshotWriter::finish`].
pub struct SnapshotWriter<W: Write> {
    layered: Layered<W>,
}

impl<W: Write> SnapshotWriter<W> {
    /// `iv` must be fresh for every snapshot sealed under the same keys.
    pub fn new(out: W, envelope: &Envelope, iv: [u8; IV_BYTES]) -> std::io::Result<Self> {
        use flate2::Compression;
        let layered = match (&envelope.keys, envelope.compress) {
            (None, false) => Layered::Plain(out),
            (Some(keys), false) => Layered::Sealed(Sealer::new(out, keys, iv)?),
            (None, true) => {
                Layered::Compressed(flate2::write::GzEncoder::new(out, Compression::fast()))
            }
            (Some(keys), true) => {
                let gzip = flate2::write::GzEncoder::new(out, Compression::none());
                Layered::SealedCompressed(Sealer::new(gzip, keys, iv)?)
            }
        };
        Ok(Self { layered })
    }

    /// Closes every layer and returns the output.
    pub fn finish(self) -> std::io::Result<W> {
        match self.layered {
            Layered::Plain(out) => Ok(out),
            Layered::Sealed(sealer) => sealer.finish(),
            Layered::Compressed(gzip) => gzip.finish(),
            Layered::SealedCompressed(sealer) => sealer.finish()?.finish(),
        }
    }
}

impl<W: Write> Write for SnapshotWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.layered {
            Layered::Plain(out) => out.write(buf),
            Layered::Sealed(sealer) => sealer.write(buf),
            Layered::Compressed(gzip) => gzip.write(buf),
            Layered::SealedCompressed(sealer) => sealer.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.layered {
            Layered::Plain(out) => out.flush(),
            Layered::Sealed(sealer) => sealer.flush(),
            Layered::Compressed(gzip) => gzip.flush(),
            Layered::SealedCompressed(sealer) => sealer.flush(),
        }
    }
}

/// Reads exactly `N` bytes, or reports a short input as "not a snapshot".
fn read_magic<const N: usize>(input: &mut impl Read) -> Result<[u8; N], OpenError> {
    let mut bytes = [0u8; N];
    input.read_exact(&mut bytes).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => OpenError::NotASnapshot,
        _ => OpenError::Io(e),
    })?;
    Ok(bytes)
}

/// The first bytes of an etcd database payload: bbolt's page 0 has id 0.
/// The payload's own check ([`crate::payload::verify`]) tells the rest.
const BBOLT_FIRST_BYTES: [u8; 8] = [0; 8];

/// Opens a stored snapshot from `input`, writing the payload to `out`.
///
/// `keys` are the keys the node has; `require_sealed` refuses a snapshot
/// without encryption. The payload written is only trustworthy once this
/// returns `Ok`: a tag that does not match is found at the end. The
/// payload itself is checked separately ([`crate::payload::verify`]).
pub fn open(
    mut input: impl Read,
    out: &mut impl Write,
    keys: Option<&SnapshotKeys>,
    require_sealed: bool,
) -> Result<Layers, OpenError> {
    let first: [u8; 2] = read_magic(&mut input)?;
    let compressed = first == GZIP_MAGIC;
    let prefixed = std::io::Cursor::new(first).chain(input);
    let mut inner: Box<dyn Read> = if compressed {
        Box::new(flate2::read::GzDecoder::new(prefixed))
    } else {
        Box::new(prefixed)
    };
    let magic: [u8; 8] = read_magic(&mut inner)?;
    let encrypted = &magic == SEAL_MAGIC;
    if encrypted {
        let keys = keys.ok_or(OpenError::NoKey)?;
        unseal(inner, out, keys)?;
    } else if &magic == SNAPSHOT_MAGIC
        || magic == BBOLT_FIRST_BYTES
        || &magic == e2d_core::delta::codec::DELTA_MAGIC
    {
        if require_sealed {
            return Err(OpenError::Unencrypted);
        }
        out.write_all(&magic)?;
        std::io::copy(&mut inner, out)?;
    } else {
        return Err(OpenError::NotASnapshot);
    }
    Ok(Layers {
        compressed,
        encrypted,
    })
}

/// The rest of a sealed snapshot after its magic: decrypts to `out`, then
/// checks the tag.
fn unseal(
    mut input: impl Read,
    out: &mut impl Write,
    keys: &SnapshotKeys,
) -> Result<(), OpenError> {
    let truncated = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => OpenError::Tampered,
        _ => OpenError::Io(e),
    };
    let mut key_id = [0u8; KEY_ID_BYTES];
    input.read_exact(&mut key_id).map_err(truncated)?;
    if key_id != keys.key_id {
        return Err(OpenError::WrongKey {
            found: hex(&key_id),
            ours: hex(&keys.key_id),
        });
    }
    let mut iv = [0u8; IV_BYTES];
    input.read_exact(&mut iv).map_err(truncated)?;
    let mut tag = <Tag as Mac>::new_from_slice(&keys.mac).expect("HMAC takes any key length");
    for part in [&SEAL_MAGIC[..], &key_id, &iv] {
        tag.update(part);
    }
    let mut cipher = Aes256Ctr::new(&keys.cipher.into(), &iv.into());
    // The last TAG_BYTES read so far may be the tag: hold them back.
    let mut buffer = vec![0u8; CHUNK_BYTES + TAG_BYTES];
    let mut held = 0usize;
    loop {
        let n = match input.read(&mut buffer[held..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(truncated(e)),
        };
        held += n;
        if held > TAG_BYTES {
            let ready = held - TAG_BYTES;
            let chunk = &mut buffer[..ready];
            tag.update(chunk);
            cipher.apply_keystream(chunk);
            out.write_all(chunk)?;
            buffer.copy_within(ready..held, 0);
            held = TAG_BYTES;
        }
    }
    if held < TAG_BYTES {
        return Err(OpenError::Tampered);
    }
    tag.verify_slice(&buffer[..TAG_BYTES])
        .map_err(|_| OpenError::Tampered)?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::ca_key::tests::{EC_SEC1, OTHER_EC_SEC1};
    use super::*;

    fn payload() -> Vec<u8> {
        let mut bytes = SNAPSHOT_MAGIC.to_vec();
        bytes.extend((0..200_000u32).map(|i| (i % 251) as u8));
        bytes
    }

    fn seal(envelope: &Envelope) -> Vec<u8> {
        let mut writer = SnapshotWriter::new(Vec::new(), envelope, [7; IV_BYTES]).unwrap();
        writer.write_all(&payload()).unwrap();
        writer.finish().unwrap()
    }

    fn keys(pem: &str) -> SnapshotKeys {
        SnapshotKeys::from_pem(pem).unwrap()
    }

    fn open_bytes(
        stored: &[u8],
        keys: Option<&SnapshotKeys>,
        require_sealed: bool,
    ) -> Result<(Layers, Vec<u8>), OpenError> {
        let mut out = Vec::new();
        open(stored, &mut out, keys, require_sealed).map(|layers| (layers, out))
    }

    #[test]
    fn every_combination_round_trips() {
        let key = keys(EC_SEC1);
        for compress in [false, true] {
            for sealed in [false, true] {
                let envelope = Envelope {
                    compress,
                    keys: sealed.then(|| key.clone()),
                };
                let stored = seal(&envelope);
                let (layers, out) = open_bytes(&stored, Some(&key), sealed).unwrap();
                assert_eq!(out, payload(), "compress {compress} sealed {sealed}");
                assert_eq!(
                    layers,
                    Layers {
                        compressed: compress,
                        encrypted: sealed
                    }
                );
                if sealed {
                    let plain = payload();
                    assert!(
                        !stored.windows(64).any(|w| w == &plain[1000..1064]),
                        "plaintext visible in the stored snapshot"
                    );
                }
            }
        }
    }

    #[test]
    fn compression_shrinks_plain_payloads() {
        let plain = seal(&Envelope::default());
        let compressed = seal(&Envelope {
            compress: true,
            keys: None,
        });
        assert!(compressed.len() * 4 < plain.len());
    }

    #[test]
    fn every_flipped_byte_of_a_sealed_snapshot_is_refused() {
        let key = keys(EC_SEC1);
        let stored = seal(&Envelope {
            compress: false,
            keys: Some(key.clone()),
        });
        let step = (stored.len() / 100).max(1);
        for at in (0..stored.len()).step_by(step).chain([stored.len() - 1]) {
            let mut bad = stored.clone();
            bad[at] ^= 0x01;
            let result = open_bytes(&bad, Some(&key), true);
            assert!(result.is_err(), "flip at {at} of {} accepted", stored.len());
        }
    }

    #[test]
    fn truncation_and_other_keys_are_refused_with_their_reason() {
        let key = keys(EC_SEC1);
        for compress in [false, true] {
            let stored = seal(&Envelope {
                compress,
                keys: Some(key.clone()),
            });
            for cut in [stored.len() - 1, stored.len() / 2, 40, 10] {
                assert!(open_bytes(&stored[..cut], Some(&key), true).is_err());
            }
            if !compress {
                assert!(matches!(
                    open_bytes(&stored[..stored.len() - 1], Some(&key), true),
                    Err(OpenError::Tampered)
                ));
            }
            let other = keys(OTHER_EC_SEC1);
            assert!(matches!(
                open_bytes(&stored, Some(&other), true),
                Err(OpenError::WrongKey { .. })
            ));
            assert!(matches!(
                open_bytes(&stored, None, false),
                Err(OpenError::NoKey)
            ));
        }
    }

    #[test]
    fn a_swapped_header_is_refused() {
        let key = keys(EC_SEC1);
        let envelope = Envelope {
            compress: false,
            keys: Some(key.clone()),
        };
        let first = seal(&envelope);
        let mut writer = SnapshotWriter::new(Vec::new(), &envelope, [9; IV_BYTES]).unwrap();
        writer.write_all(&payload()).unwrap();
        let second = writer.finish().unwrap();
        let header = SEAL_MAGIC.len() + KEY_ID_BYTES + IV_BYTES;
        let mut swapped = second[..header].to_vec();
        swapped.extend_from_slice(&first[header..]);
        assert!(matches!(
            open_bytes(&swapped, Some(&key), true),
            Err(OpenError::Tampered)
        ));
    }

    #[test]
    fn an_unencrypted_snapshot_is_refused_when_encryption_is_on() {
        let key = keys(EC_SEC1);
        for compress in [false, true] {
            let stored = seal(&Envelope {
                compress,
                keys: None,
            });
            assert!(matches!(
                open_bytes(&stored, Some(&key), true),
                Err(OpenError::Unencrypted)
            ));
        }
    }

    #[test]
    fn foreign_files_are_not_snapshots() {
        assert!(matches!(
            open_bytes(b"SQLite format 3\0", None, false),
            Err(OpenError::NotASnapshot)
        ));
        assert!(matches!(
            open_bytes(b"", None, false),
            Err(OpenError::NotASnapshot)
        ));
    }
}
