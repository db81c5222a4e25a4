//! HTTP/2 requests whose `:authority` is a URL, as etcdctl 3.4 sends for
//! `--endpoints http://127.0.0.1:2379`. etcd's server (grpc-go) takes any
//! authority; h2 refuses the stream with PROTOCOL_ERROR. The client port
//! reads each connection through [`UrlAuthorityFix`], which rewrites such
//! a value to the URL's authority (`127.0.0.1:2379`) in the HEADERS frames
//! before h2 decodes them.
//!
//! Only a value h2 would refuse is touched, and in place: the header field
//! keeps its HPACK representation and its value only gets shorter. The
//! client's compression table and h2's then hold the same entries, newest
//! first, with h2's entries no larger, so h2 evicts none the client still
//! refers to (it may keep older ones, which nothing refers to). A value too
//! large for the client's table is left alone: h2 would keep the shorter
//! one where the client keeps none.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::http::uri::Authority;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What an HTTP/2 client sends first.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_BYTES: usize = 9;
const FRAME_TYPE_HEADERS: u8 = 0x1;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// Stream dependency and weight of a HEADERS frame with PRIORITY.
const PRIORITY_BYTES: usize = 5;
/// Largest HEADERS frame looked into: HTTP/2's default frame size, which
/// the client port keeps. A larger one passes as it is (h2 refuses it).
const HEADERS_FRAME_BYTES_MAX: usize = 16 * 1024;
/// Longest encoded `:authority` value looked into.
const AUTHORITY_BYTES_MAX: usize = 255;
/// HPACK's dynamic table size until the client changes it (h2 keeps
/// HTTP/2's default SETTINGS_HEADER_TABLE_SIZE).
const TABLE_BYTES_DEFAULT: usize = 4096;
/// An HPACK table entry's size beyond its name and value (RFC 7541 4.1).
const TABLE_ENTRY_OVERHEAD_BYTES: usize = 32;
/// Continuation bytes of an HPACK integer read at most (28 bits of value).
const INTEGER_CONTINUATION_BYTES_MAX: usize = 4;
/// `:authority`'s index in HPACK's static table.
const AUTHORITY_STATIC_INDEX: usize = 1;
const AUTHORITY_NAME: &[u8] = b":authority";

/// A connection whose reads have URL authorities rewritten; writes pass.
pub struct UrlAuthorityFix<IO> {
    inner: IO,
    scanner: Scanner,
    /// Bytes of an unfinished frame header or HEADERS frame, held back
    /// until the rest arrives.
    held: Vec<u8>,
    /// Scanned bytes not yet handed to the reader, from `ready_from`.
    ready: Vec<u8>,
    ready_from: usize,
}

impl<IO> UrlAuthorityFix<IO> {
    pub fn new(inner: IO) -> Self {
        Self {
            inner,
            scanner: Scanner::new(),
            held: Vec::new(),
            ready: Vec::new(),
            ready_from: 0,
        }
    }

    /// Hands over scanned bytes; false if there were none.
    fn take_ready(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let waiting = &self.ready[self.ready_from..];
        if waiting.is_empty() {
            return false;
        }
        let n = waiting.len().min(buf.remaining());
        buf.put_slice(&waiting[..n]);
        self.ready_from += n;
        if self.ready_from == self.ready.len() {
            self.ready.clear();
            self.ready_from = 0;
        }
        true
    }

    /// Scans bytes just read into `buf` from `before` on, in place; what
    /// ends in an unfinished frame is held back.
    fn scan_in_place(&mut self, buf: &mut ReadBuf<'_>, before: usize) {
        let scanned = self.scanner.scan(&mut buf.filled_mut()[before..]);
        self.held
            .extend_from_slice(&buf.filled()[before + scanned.read..]);
        buf.set_filled(before + scanned.written);
    }

    /// Adds bytes just read to the held ones and scans them: what is
    /// complete becomes ready.
    fn scan_held(&mut self, buf: &mut ReadBuf<'_>, before: usize) {
        self.held.extend_from_slice(&buf.filled()[before..]);
        buf.set_filled(before);
        let scanned = self.scanner.scan(&mut self.held);
        let unfinished = self.held.split_off(scanned.read);
        self.ready = std::mem::replace(&mut self.held, unfinished);
        self.ready.truncate(scanned.written);
        self.ready_from = 0;
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for UrlAuthorityFix<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.take_ready(buf) || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if this.scanner.passes_all() && this.held.is_empty() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            if buf.filled().len() == before {
                // The end: what was held back goes as it is, for h2 to judge.
                this.ready = std::mem::take(&mut this.held);
                this.ready_from = 0;
                if this.ready.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            if this.held.is_empty() {
                this.scan_in_place(buf, before);
                if buf.filled().len() > before {
                    return Poll::Ready(Ok(()));
                }
            } else {
                this.scan_held(buf, before);
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for UrlAuthorityFix<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The first bytes, `matched` of them the HTTP/2 preface so far.
    Preface { matched: usize },
    /// HTTP/2 frames.
    Frames,
    /// Not HTTP/2: every byte passes.
    Passthrough,
}

/// Where a connection's byte stream stands, frame by frame.
#[derive(Debug)]
struct Scanner {
    mode: Mode,
    /// Payload bytes of the current frame still to pass.
    skip_bytes: usize,
    /// The client's HPACK dynamic table size, as its last update set it.
    table_bytes: usize,
}

/// What [`Scanner::scan`] made of its bytes: the first `written` are the
/// output; from `read` on they are an unfinished frame to scan again with
/// the bytes that follow.
#[derive(Debug, PartialEq, Eq)]
struct Scanned {
    written: usize,
    read: usize,
}

/// The next piece of the stream.
enum Piece {
    Pass(usize),
    Replace { read: usize, bytes: Vec<u8> },
    Unfinished,
}

impl Scanner {
    fn new() -> Self {
        Self {
            mode: Mode::Preface { matched: 0 },
            skip_bytes: 0,
            table_bytes: TABLE_BYTES_DEFAULT,
        }
    }

    fn passes_all(&self) -> bool {
        self.mode == Mode::Passthrough
    }

    /// Rewrites `data` in place, moving what follows a shortened frame up.
    fn scan(&mut self, data: &mut [u8]) -> Scanned {
        let (mut written, mut read) = (0, 0);
        while read < data.len() {
            match self.next_piece(&data[read..]) {
                Piece::Pass(n) => {
                    if written != read {
                        data.copy_within(read..read + n, written);
                    }
                    read += n;
                    written += n;
                }
                Piece::Replace { read: n, bytes } => {
                    // Never longer than what it replaces, so it fits.
                    data[written..written + bytes.len()].copy_from_slice(&bytes);
                    read += n;
                    written += bytes.len();
                }
                Piece::Unfinished => break,
            }
        }
        Scanned { written, read }
    }

    fn next_piece(&mut self, input: &[u8]) -> Piece {
        match self.mode {
            Mode::Passthrough => Piece::Pass(input.len()),
            Mode::Preface { matched } => {
                let n = (PREFACE.len() - matched).min(input.len());
                if input[..n] == PREFACE[matched..matched + n] {
                    self.mode = match matched + n {
                        all if all == PREFACE.len() => Mode::Frames,
                        matched => Mode::Preface { matched },
                    };
                    Piece::Pass(n)
                } else {
                    self.mode = Mode::Passthrough;
                    Piece::Pass(input.len())
                }
            }
            Mode::Frames if self.skip_bytes > 0 => {
                let n = self.skip_bytes.min(input.len());
                self.skip_bytes -= n;
                Piece::Pass(n)
            }
            Mode::Frames => self.next_frame(input),
        }
    }

    fn next_frame(&mut self, input: &[u8]) -> Piece {
        let Some(header) = input.get(..FRAME_HEADER_BYTES) else {
            return Piece::Unfinished;
        };
        let payload_bytes =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        if header[3] != FRAME_TYPE_HEADERS || payload_bytes > HEADERS_FRAME_BYTES_MAX {
            self.skip_bytes = payload_bytes;
            return Piece::Pass(FRAME_HEADER_BYTES);
        }
        let Some(frame) = input.get(..FRAME_HEADER_BYTES + payload_bytes) else {
            return Piece::Unfinished;
        };
        match rewrite_headers_frame(frame, &mut self.table_bytes) {
            Some(bytes) => Piece::Replace {
                read: frame.len(),
                bytes,
            },
            None => Piece::Pass(frame.len()),
        }
    }
}

/// The HEADERS frame with its URL `:authority` rewritten, if it has one.
fn rewrite_headers_frame(frame: &[u8], table_bytes: &mut usize) -> Option<Vec<u8>> {
    let flags = frame[4];
    let payload = &frame[FRAME_HEADER_BYTES..];
    let (mut start, mut end) = (0, payload.len());
    if flags & FLAG_PADDED != 0 {
        start = 1;
        end = end.checked_sub(usize::from(*payload.first()?))?;
    }
    if flags & FLAG_PRIORITY != 0 {
        start += PRIORITY_BYTES;
    }
    let block = payload.get(start..end)?;
    let mut found = None;
    // A block cut short (its end in CONTINUATION frames) still yields
    // what it holds.
    let _ = walk_block(block, table_bytes, &mut found);
    let Found { value, authority } = found?;
    let mut rewritten = Vec::with_capacity(frame.len());
    rewritten.extend_from_slice(&frame[..FRAME_HEADER_BYTES]);
    rewritten.extend_from_slice(&payload[..start]);
    rewritten.extend_from_slice(&block[..value.start]);
    encode_integer(&mut rewritten, 0, 7, authority.len());
    rewritten.extend_from_slice(&authority);
    rewritten.extend_from_slice(&block[value.end..]);
    rewritten.extend_from_slice(&payload[end..]);
    let payload_bytes = rewritten.len() - FRAME_HEADER_BYTES;
    rewritten[..3]
        .copy_from_slice(&payload_bytes.to_be_bytes()[std::mem::size_of::<usize>() - 3..]);
    Some(rewritten)
}

/// A URL `:authority` in a header block: where its value string lies and
/// what replaces it.
struct Found {
    value: std::ops::Range<usize>,
    authority: Vec<u8>,
}

/// Walks the header block's fields (RFC 7541 6), following the client's
/// table size updates and noting the first URL `:authority`; `None` where
/// the block ends early or does not parse.
fn walk_block(block: &[u8], table_bytes: &mut usize, found: &mut Option<Found>) -> Option<()> {
    let mut at = 0;
    while at < block.len() {
        let first = block[at];
        if first & 0x80 != 0 {
            // Indexed field: a table entry, passed as it is.
            at += decode_integer(&block[at..], 7)?.1;
            continue;
        }
        if first & 0xe0 == 0x20 {
            let (size, used) = decode_integer(&block[at..], 5)?;
            *table_bytes = size;
            at += used;
            continue;
        }
        // A literal: with incremental indexing (01), or without (0000,
        // never indexed 0001).
        let indexed = first & 0xc0 == 0x40;
        let (name_index, used) = decode_integer(&block[at..], if indexed { 6 } else { 4 })?;
        at += used;
        let is_authority = if name_index == 0 {
            let name = string_at(block, at)?;
            at = name.end;
            decode_string(block, &name).as_deref() == Some(AUTHORITY_NAME)
        } else {
            name_index == AUTHORITY_STATIC_INDEX
        };
        let value = string_at(block, at)?;
        let value_range = at..value.end;
        at = value.end;
        if !is_authority || found.is_some() {
            continue;
        }
        let Some((value_bytes, authority)) = url_authority(block, &value) else {
            continue;
        };
        let entry_bytes = AUTHORITY_NAME.len() + value_bytes + TABLE_ENTRY_OVERHEAD_BYTES;
        if !indexed || entry_bytes <= *table_bytes {
            *found = Some(Found {
                value: value_range,
                authority,
            });
        }
    }
    Some(())
}

/// An HPACK string's bytes in its block.
struct StringAt {
    huffman: bool,
    start: usize,
    end: usize,
}

fn string_at(block: &[u8], at: usize) -> Option<StringAt> {
    let huffman = block.get(at)? & 0x80 != 0;
    let (length, used) = decode_integer(&block[at..], 7)?;
    let start = at + used;
    let end = start.checked_add(length)?;
    (end <= block.len()).then_some(StringAt {
        huffman,
        start,
        end,
    })
}

fn decode_string(block: &[u8], string: &StringAt) -> Option<Vec<u8>> {
    let bytes = &block[string.start..string.end];
    if string.huffman {
        loona_hpack::huffman::HuffmanDecoder::new()
            .decode(bytes)
            .ok()
    } else {
        Some(bytes.to_vec())
    }
}

/// For a value h2 would refuse that is a URL with an authority h2 takes:
/// the value's decoded length and that authority.
fn url_authority(block: &[u8], value: &StringAt) -> Option<(usize, Vec<u8>)> {
    if value.end - value.start > AUTHORITY_BYTES_MAX {
        return None;
    }
    let text = decode_string(block, value)?;
    if Authority::try_from(text.as_slice()).is_ok() {
        return None;
    }
    let after_scheme = text.windows(3).position(|w| w == b"://")? + 3;
    let rest = &text[after_scheme..];
    let end = rest
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    Authority::try_from(authority).ok()?;
    Some((text.len(), authority.to_vec()))
}

/// An HPACK integer with a `prefix_bits` prefix: its value and its bytes.
fn decode_integer(input: &[u8], prefix_bits: u32) -> Option<(usize, usize)> {
    let prefix_max = (1usize << prefix_bits) - 1;
    let first = usize::from(*input.first()?) & prefix_max;
    if first < prefix_max {
        return Some((first, 1));
    }
    let mut value = prefix_max;
    for (i, &byte) in input[1..]
        .iter()
        .take(INTEGER_CONTINUATION_BYTES_MAX)
        .enumerate()
    {
        value += usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 2));
        }
    }
    None
}

/// Appends `value` as an HPACK integer with a `prefix_bits` prefix after
/// the bits `flags` sets in its first byte.
fn encode_integer(out: &mut Vec<u8>, flags: u8, prefix_bits: u32, value: usize) {
    let prefix_max = (1usize << prefix_bits) - 1;
    if value < prefix_max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | prefix_max as u8);
    let mut rest = value - prefix_max;
    while rest >= 0x80 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// The HEADERS frame etcdctl 3.4 (grpc-go) sends first for
    /// `--endpoints http://127.0.0.1:23799 endpoint status`, Huffman
    /// strings and all.
    const GRPC_GO_HEADERS: &str = "0000770104000000018386459760a924882d9dcb6571afa066a925a87510ac6e48d36a3f41909d29aee30c044eae05c0b86e09975f7f5f8b1d75d0620d263d4c4d65647a8b9acac8b4c7602bb2caecff40027465864d833505b11f40899acac8b24d494f6a7f860befb8d0436f408d25062d495875996ee5b1063d5f03332e34";

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn frame(flags: u8, block: &[u8]) -> Vec<u8> {
        let mut frame = (block.len() as u32).to_be_bytes()[1..].to_vec();
        frame.extend_from_slice(&[FRAME_TYPE_HEADERS, flags, 0, 0, 0, 1]);
        frame.extend_from_slice(block);
        frame
    }

    /// A literal `:authority` with incremental indexing, raw string.
    fn authority_field(value: &str) -> Vec<u8> {
        let mut field = vec![0x40 | AUTHORITY_STATIC_INDEX as u8];
        encode_integer(&mut field, 0, 7, value.len());
        field.extend_from_slice(value.as_bytes());
        field
    }

    /// Reads `input` through the fix, `chunk_bytes` at a time.
    fn read_through(input: &[u8], chunk_bytes: usize) -> Vec<u8> {
        struct Chunked(Vec<u8>, usize);
        impl AsyncRead for Chunked {
            fn poll_read(
                mut self: Pin<&mut Self>,
                _: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                let n = self.1.min(self.0.len()).min(buf.remaining());
                buf.put_slice(&self.0[..n]);
                self.0.drain(..n);
                Poll::Ready(Ok(()))
            }
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut out = Vec::new();
        let mut fixed = UrlAuthorityFix::new(Chunked(input.to_vec(), chunk_bytes));
        runtime.block_on(fixed.read_to_end(&mut out)).unwrap();
        out
    }

    /// The header blocks of the HEADERS frames in `stream` (after the
    /// preface), decoded with one table, as h2 does.
    fn decode_headers(stream: &[u8]) -> Vec<Vec<(String, String)>> {
        let mut decoder = loona_hpack::Decoder::new();
        let mut at = PREFACE.len();
        let mut blocks = Vec::new();
        while at < stream.len() {
            let header = &stream[at..at + FRAME_HEADER_BYTES];
            let length =
                usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
            let payload = &stream[at + FRAME_HEADER_BYTES..at + FRAME_HEADER_BYTES + length];
            if header[3] == FRAME_TYPE_HEADERS {
                let fields = decoder.decode(payload).expect("a valid header block");
                blocks.push(
                    fields
                        .into_iter()
                        .map(|(n, v)| {
                            (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap())
                        })
                        .collect(),
                );
            }
            at += FRAME_HEADER_BYTES + length;
        }
        blocks
    }

    fn authority_of(fields: &[(String, String)]) -> &str {
        &fields
            .iter()
            .find(|(name, _)| name == ":authority")
            .unwrap()
            .1
    }

    fn with_preface(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut stream = PREFACE.to_vec();
        // An empty SETTINGS frame, as clients send first.
        stream.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        for frame in frames {
            stream.extend_from_slice(frame);
        }
        stream
    }

    #[test]
    fn a_url_authority_from_grpc_go_becomes_its_host_and_port_however_the_bytes_arrive() {
        let stream = with_preface(&[hex(GRPC_GO_HEADERS)]);
        let before = decode_headers(&stream);
        assert_eq!(authority_of(&before[0]), "http://127.0.0.1:23799");
        for chunk_bytes in [1, 2, 7, 9, 30, 4096] {
            let after = decode_headers(&read_through(&stream, chunk_bytes));
            assert_eq!(
                authority_of(&after[0]),
                "127.0.0.1:23799",
                "chunks of {chunk_bytes}"
            );
            let others = |fields: &[(String, String)]| -> Vec<(String, String)> {
                fields
                    .iter()
                    .filter(|(n, _)| n != ":authority")
                    .cloned()
                    .collect()
            };
            assert_eq!(others(&after[0]), others(&before[0]));
        }
    }

    #[test]
    fn later_references_to_the_rewritten_entry_read_the_rewritten_value() {
        // 0xbe: the newest entry of the dynamic table.
        let stream = with_preface(&[
            frame(0x4, &authority_field("https://example.com:2379/")),
            frame(0x4, &[0xbe]),
        ]);
        let blocks = decode_headers(&read_through(&stream, 4096));
        assert_eq!(authority_of(&blocks[0]), "example.com:2379");
        assert_eq!(authority_of(&blocks[1]), "example.com:2379");
    }

    #[test]
    fn padded_and_prioritized_frames_keep_their_padding_and_priority() {
        let mut payload = vec![3];
        payload.extend_from_slice(&[0, 0, 0, 0, 16]);
        payload.extend_from_slice(&authority_field("http://h:1"));
        payload.extend_from_slice(&[0, 0, 0]);
        let stream = with_preface(&[frame(0x4 | FLAG_PADDED | FLAG_PRIORITY, &payload)]);
        let out = read_through(&stream, 4096);
        let mut expected_payload = vec![3, 0, 0, 0, 0, 16];
        expected_payload.extend_from_slice(&authority_field("h:1"));
        expected_payload.extend_from_slice(&[0, 0, 0]);
        let expected = with_preface(&[frame(0x4 | FLAG_PADDED | FLAG_PRIORITY, &expected_payload)]);
        assert_eq!(out, expected);
    }

    #[test]
    fn what_h2_takes_and_what_is_not_http2_pass_unchanged() {
        let valid = with_preface(&[frame(0x4, &authority_field("127.0.0.1:2379"))]);
        let not_a_url = with_preface(&[frame(0x4, &authority_field("no authority"))]);
        let http1 = b"GET /health HTTP/1.1\r\nHost: http://127.0.0.1:2379\r\n\r\n".to_vec();
        for stream in [valid, not_a_url, http1] {
            assert_eq!(read_through(&stream, 5), stream);
        }
    }

    #[test]
    fn a_value_too_large_for_the_clients_table_is_left_alone() {
        // A size update to 50 bytes: the original entry (10 + 18 + 32)
        // does not fit the client's table, the rewritten one (10 + 3 + 32)
        // would fit h2's, and the two tables would differ.
        let mut block = vec![0x20 | 31, 19];
        block.extend_from_slice(&authority_field("http://h:1/0123456"));
        let small_table = with_preface(&[frame(0x4, &block)]);
        assert_eq!(read_through(&small_table, 4096), small_table);
        // Without indexing the table does not matter.
        let mut block = vec![0x20 | 31, 19, AUTHORITY_STATIC_INDEX as u8];
        block.extend_from_slice(&authority_field("http://h:1")[1..]);
        let unindexed = with_preface(&[frame(0x4, &block)]);
        let blocks = decode_headers(&read_through(&unindexed, 4096));
        assert_eq!(authority_of(&blocks[0]), "h:1");
    }

    #[test]
    fn hpack_integers_round_trip() {
        for prefix_bits in [4, 5, 6, 7] {
            for value in [0, 1, 14, 15, 16, 126, 127, 128, 300, 16_383, 1 << 20] {
                let mut out = Vec::new();
                encode_integer(&mut out, 0, prefix_bits, value);
                assert_eq!(decode_integer(&out, prefix_bits), Some((value, out.len())));
            }
        }
    }
}
