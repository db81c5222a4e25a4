//! A stream polled only after it woke: a task that waits on several
//! sources at once (a watch stream waits on new revisions, its client's
//! requests and a timer) polls every one of them each time any one wakes
//! it. For a client's request stream that poll is not free (h2 takes its
//! connection's lock and swaps the stored waker), and a thousand watch
//! streams pay it for every new revision. Behind a gate, the request
//! stream is polled again only when it has said it has something.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;
use futures_util::Stream;

/// Whether the stream woke since it was last polled, and the task to wake.
#[derive(Default)]
struct Signal {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

pub struct WakeGate<S> {
    inner: S,
    signal: Arc<Signal>,
    /// Wakes `signal`; made once, so a poll clones no waker of its own.
    waker: Waker,
}

impl<S: Stream + Unpin> WakeGate<S> {
    pub fn new(inner: S) -> Self {
        let signal = Arc::new(Signal::default());
        // Not polled yet: the first poll goes through.
        signal.woken.store(true, Ordering::Relaxed);
        let waker = Waker::from(signal.clone());
        Self {
            inner,
            signal,
            waker,
        }
    }

    /// Polls the stream if it woke since its last `Pending`; otherwise
    /// only records the calling task, to be woken when the stream wakes.
    pub fn poll_next_woken(&mut self, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        self.signal.task.register(cx.waker());
        // Cleared before the poll: a wake during it sets it again, and the
        // next call polls once more.
        if !self.signal.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let polled = Pin::new(&mut self.inner).poll_next(&mut Context::from_waker(&self.waker));
        if polled.is_ready() {
            // A stream that yielded owes no wake for what it still holds.
            self.signal.woken.store(true, Ordering::Release);
        }
        polled
    }

    /// The next item, as `StreamExt::next`, through the gate.
    pub async fn next(&mut self) -> Option<S::Item> {
        std::future::poll_fn(|cx| self.poll_next_woken(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that counts its polls and yields what was pushed into it.
    #[derive(Default)]
    struct Counted {
        polls: usize,
        items: std::collections::VecDeque<u32>,
        waker: Option<Waker>,
    }

    impl Stream for Counted {
        type Item = u32;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<u32>> {
            self.polls += 1;
            match self.items.pop_front() {
                Some(item) => Poll::Ready(Some(item)),
                None => {
                    self.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        }
    }

    #[derive(Default)]
    struct TaskWakes(std::sync::atomic::AtomicUsize);

    impl Wake for TaskWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_stream_is_polled_again_only_after_it_woke_or_yielded() {
        let task = Arc::new(TaskWakes::default());
        let task_waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&task_waker);
        let mut gate = WakeGate::new(Counted::default());

        assert!(gate.poll_next_woken(&mut cx).is_pending());
        assert_eq!(gate.inner.polls, 1, "the first poll goes through");
        for _ in 0..5 {
            assert!(gate.poll_next_woken(&mut cx).is_pending());
        }
        assert_eq!(gate.inner.polls, 1, "no wake, no poll");

        gate.inner.items.extend([7, 8]);
        gate.inner.waker.take().unwrap().wake();
        assert_eq!(
            task.0.load(Ordering::SeqCst),
            1,
            "the stream's wake reaches the task"
        );
        assert_eq!(gate.poll_next_woken(&mut cx), Poll::Ready(Some(7)));
        // Nothing woke, but a stream that yielded may hold more.
        assert_eq!(gate.poll_next_woken(&mut cx), Poll::Ready(Some(8)));
        assert!(gate.poll_next_woken(&mut cx).is_pending());
        let polls = gate.inner.polls;
        assert!(gate.poll_next_woken(&mut cx).is_pending());
        assert_eq!(gate.inner.polls, polls);
    }
}
