//! A served connection whose writes wait one scheduler round before they
//! reach the socket, so the answers that become ready together leave in
//! one `writev`.
//!
//! Without it, each answer is its own syscall: the raft driver applies a
//! batch, wakes every waiting call, and the connection task flushes after
//! each call's frames. With it, the first flush after new bytes yields once
//! (the task goes to the back of the run queue, behind the other calls the
//! batch woke), and the second flush writes everything they added.
//!
//! A yield is not free: the task rescheduled behind others wakes an idle
//! worker thread to take them, and one client's lone answers gain nothing
//! from it (a round trip to an idle server took up to twice as long). So
//! a connection learns from its holds: after a hold that gained nothing,
//! the next flushes go out at once, twice as many after each further hold
//! that gained nothing (up to [`STRAIGHT_FLUSHES_MAX`]); the next hold
//! that gains returns the connection to holding every write.
//!
//! A large write (a frame of a large answer, [`WRITE_THROUGH_BYTES_MIN`]
//! and up) is not held: it goes to the socket at once, behind what is
//! held and in the same `writev`. Holding it would only copy it.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes held back at most; past this, writes go to the socket first.
const HELD_BYTES_MAX: usize = 64 * 1024;

/// A write of at least this many bytes (a frame of a large answer) goes
/// to the socket at once, after what is held and in the same `writev`:
/// holding it gains nothing and would copy it.
const WRITE_THROUGH_BYTES_MIN: usize = 16 * 1024;

/// Buffers of one write-through `writev` at most, the held bytes among them.
const WRITE_THROUGH_SLICES_MAX: usize = 8;

/// Flushes that go out without a hold after a run of holds that gained
/// nothing, at most: a connection whose load comes back holds again
/// within this many flushes.
const STRAIGHT_FLUSHES_MAX: u32 = 64;

/// The bytes held, between two drains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// Not flushed yet.
    Open,
    /// A flush yielded with this many bytes held: more at the next flush,
    /// and the hold gained.
    Waiting { held_at_yield: usize },
    /// To be written by this and every next flush until drained: their
    /// round is over, or this flush went out without one. Once per hold,
    /// so a busy connection is never put off twice.
    Due,
}

/// `inner` with coalesced writes; reads pass straight through.
pub struct CoalescedIo<T> {
    inner: T,
    /// Bytes accepted from the writer and not yet on the socket.
    held: Vec<u8>,
    /// Of `held`, this many went out already (a partial write).
    held_written: usize,
    /// Where the bytes held stand.
    hold: Hold,
    /// Flushes still to go out without a hold.
    straight_flushes_left: u32,
    /// Flushes granted without a hold after the last hold that gained
    /// nothing (zero once a hold gains).
    straight_flushes_granted: u32,
}

impl<T> CoalescedIo<T> {
    pub fn new(inner: T) -> Self {
        CoalescedIo {
            inner,
            held: Vec::new(),
            held_written: 0,
            hold: Hold::Open,
            straight_flushes_left: 0,
            straight_flushes_granted: 0,
        }
    }

    /// The connection underneath.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncWrite + Unpin> CoalescedIo<T> {
    /// Writes out everything held.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.held_written < self.held.len() {
            let written = std::task::ready!(
                Pin::new(&mut self.inner).poll_write(cx, &self.held[self.held_written..])
            )?;
            if written == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.held_written += written;
        }
        self.held_sent();
        Poll::Ready(Ok(()))
    }

    /// Everything held is on the socket: the hold starts over empty.
    fn held_sent(&mut self) {
        debug_assert_eq!(self.held_written, self.held.len());
        self.held.clear();
        self.held_written = 0;
        self.hold = Hold::Open;
    }

    /// Whether this flush holds the bytes for a round rather than writing
    /// them; the flush that ends a hold learns whether it gained.
    fn holds(&mut self) -> bool {
        if self.held_written == self.held.len() {
            return false;
        }
        match self.hold {
            Hold::Due => {}
            Hold::Waiting { held_at_yield } => {
                if self.held.len() > held_at_yield {
                    self.straight_flushes_granted = 0;
                } else {
                    self.straight_flushes_granted =
                        (self.straight_flushes_granted * 2).clamp(1, STRAIGHT_FLUSHES_MAX);
                    self.straight_flushes_left = self.straight_flushes_granted;
                }
                self.hold = Hold::Due;
            }
            Hold::Open if self.straight_flushes_left > 0 => {
                self.straight_flushes_left -= 1;
                self.hold = Hold::Due;
            }
            Hold::Open => {
                self.hold = Hold::Waiting {
                    held_at_yield: self.held.len(),
                };
                return true;
            }
        }
        false
    }

    /// Writes what is held, then `bufs`, in one `writev`; returns how
    /// many bytes of `bufs` went out (none until all that is held has).
    fn poll_write_through(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        loop {
            let held = &self.held[self.held_written..];
            let mut slices = [IoSlice::new(&[]); WRITE_THROUGH_SLICES_MAX];
            slices[0] = IoSlice::new(held);
            let mut count = 1;
            for buf in bufs.iter().take(WRITE_THROUGH_SLICES_MAX - 1) {
                slices[count] = IoSlice::new(buf);
                count += 1;
            }
            let held_len = held.len();
            let written = std::task::ready!(
                Pin::new(&mut self.inner).poll_write_vectored(cx, &slices[..count])
            )?;
            if written == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            let from_held = written.min(held_len);
            self.held_written += from_held;
            if self.held_written == self.held.len() {
                self.held_sent();
            }
            if written > from_held {
                return Poll::Ready(Ok(written - from_held));
            }
        }
    }

    /// Room for more bytes: drains first when the hold is full.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.held.len() >= HELD_BYTES_MAX {
            std::task::ready!(self.poll_drain(cx))?;
        }
        debug_assert!(self.held.len() < HELD_BYTES_MAX);
        Poll::Ready(Ok(HELD_BYTES_MAX - self.held.len()))
    }
}

impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected
    for CoalescedIo<T>
{
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CoalescedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CoalescedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if buf.len() >= WRITE_THROUGH_BYTES_MIN {
            return self.poll_write_through(cx, &[IoSlice::new(buf)]);
        }
        let room = std::task::ready!(self.poll_room(cx))?;
        let taken = buf.len().min(room);
        self.held.extend_from_slice(&buf[..taken]);
        Poll::Ready(Ok(taken))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if bufs.iter().map(|buf| buf.len()).sum::<usize>() >= WRITE_THROUGH_BYTES_MIN {
            return self.poll_write_through(cx, bufs);
        }
        let mut room = std::task::ready!(self.poll_room(cx))?;
        let mut taken = 0;
        for buf in bufs {
            let part = buf.len().min(room);
            self.held.extend_from_slice(&buf[..part]);
            taken += part;
            room -= part;
            if room == 0 {
                break;
            }
        }
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.holds() {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn poll_flush<T: AsyncWrite + Unpin>(io: &mut CoalescedIo<T>) -> Poll<std::io::Result<()>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        Pin::new(io).poll_flush(&mut cx)
    }

    fn write<T: AsyncWrite + Unpin>(io: &mut CoalescedIo<T>, bytes: &[u8]) -> usize {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match Pin::new(io).poll_write(&mut cx, bytes) {
            Poll::Ready(Ok(n)) => n,
            other => panic!("write did not complete: {other:?}"),
        }
    }

    #[tokio::test]
    async fn writes_wait_one_round_then_leave_together() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut io = CoalescedIo::new(near);
        assert_eq!(write(&mut io, b"one "), 4);
        assert!(poll_flush(&mut io).is_pending(), "the first flush yields");
        // What comes during the round joins the same write.
        assert_eq!(write(&mut io, b"two"), 3);
        assert!(matches!(poll_flush(&mut io), Poll::Ready(Ok(()))));
        let mut got = [0u8; 7];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"one two");
        // An empty hold flushes at once, and a new hold yields again.
        assert!(matches!(poll_flush(&mut io), Poll::Ready(Ok(()))));
        write(&mut io, b"x");
        assert!(poll_flush(&mut io).is_pending());
    }

    /// Writes one byte and flushes until the flush completes; returns
    /// whether the first flush held it for a round.
    fn write_and_flush<T: AsyncWrite + Unpin>(io: &mut CoalescedIo<T>) -> bool {
        write(io, b"x");
        let held = poll_flush(io).is_pending();
        if held {
            assert!(matches!(poll_flush(io), Poll::Ready(Ok(()))));
        }
        held
    }

    #[test]
    fn holds_that_gain_nothing_let_ever_more_flushes_go_straight() {
        let mut io = CoalescedIo::new(Vec::new());
        // A lone writer: each hold gains nothing, and the flushes that go
        // out at once after it double, up to the bound.
        let mut straight_runs = Vec::new();
        assert!(write_and_flush(&mut io), "the first flush holds");
        for _ in 0..8 {
            let mut straight = 0;
            while !write_and_flush(&mut io) {
                straight += 1;
            }
            straight_runs.push(straight);
        }
        assert_eq!(straight_runs, [1, 2, 4, 8, 16, 32, 64, 64]);
        // Past the straight flushes, a hold that gains (a second writer's
        // bytes join during the round) makes every next flush hold again.
        for _ in 0..STRAIGHT_FLUSHES_MAX {
            assert!(!write_and_flush(&mut io));
        }
        write(&mut io, b"one ");
        assert!(poll_flush(&mut io).is_pending());
        write(&mut io, b"two");
        assert!(matches!(poll_flush(&mut io), Poll::Ready(Ok(()))));
        assert!(write_and_flush(&mut io), "a gain ends the straight flushes");
        // Every byte went out, in order.
        let written = io.get_ref();
        assert!(written.ends_with(b"one twox"));
        let straight: usize = straight_runs.iter().sum();
        let lone_writes = 1 + straight + straight_runs.len() + STRAIGHT_FLUSHES_MAX as usize + 1;
        assert_eq!(written.len(), lone_writes + b"one two".len());
    }

    #[tokio::test]
    async fn a_full_hold_goes_out_before_more_is_taken() {
        let (near, mut far) = tokio::io::duplex(4 * HELD_BYTES_MAX);
        let mut io = CoalescedIo::new(near);
        // Writes below the write-through size, the last one past the hold.
        let part = vec![7u8; WRITE_THROUGH_BYTES_MIN - 1];
        let mut taken = 0;
        while taken < HELD_BYTES_MAX {
            taken += write(&mut io, &part);
        }
        assert_eq!(taken, HELD_BYTES_MAX, "the hold takes what fits");
        assert_eq!(write(&mut io, &part[..10]), 10, "a full hold drains first");
        let mut got = vec![0u8; HELD_BYTES_MAX];
        far.read_exact(&mut got).await.unwrap();
        assert!(got.iter().all(|&b| b == 7));
        assert!(poll_flush(&mut io).is_pending());
        assert!(matches!(poll_flush(&mut io), Poll::Ready(Ok(()))));
        let mut rest = [0u8; 10];
        far.read_exact(&mut rest).await.unwrap();
    }

    #[tokio::test]
    async fn a_large_write_goes_out_at_once_after_what_is_held() {
        let (near, mut far) = tokio::io::duplex(4 * HELD_BYTES_MAX);
        let mut io = CoalescedIo::new(near);
        assert_eq!(write(&mut io, b"head "), 5);
        let frame = vec![9u8; WRITE_THROUGH_BYTES_MIN];
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let bufs = [IoSlice::new(b"and "), IoSlice::new(&frame)];
        let taken = match Pin::new(&mut io).poll_write_vectored(&mut cx, &bufs) {
            Poll::Ready(Ok(n)) => n,
            other => panic!("write did not complete: {other:?}"),
        };
        assert_eq!(taken, 4 + frame.len());
        // Nothing is left held: the flush has nothing to wait for.
        assert!(matches!(poll_flush(&mut io), Poll::Ready(Ok(()))));
        let mut got = vec![0u8; 9 + frame.len()];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..9], b"head and ");
        assert!(got[9..].iter().all(|&b| b == 9));
    }
}
