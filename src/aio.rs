//! Async send and receive: runtime-agnostic futures for the typed
//! [`Queue`], the byte queues ([`MpmcSender`]/[`MpmcReceiver`], SPSC
//! [`Producer`]/[`Consumer`]), pipe [`Connection`]s, [`Process`] exit and
//! pool results; with the `tokio` feature, `AsyncReadyFd`.
//!
//! Each future first makes the try-call: an operation that can complete
//! does so in its first `poll`, without a syscall. One that cannot
//! registers its waker, with an owned readiness probe of the object, at
//! the per-process waiter thread (see [`select`](crate::select)), which
//! parks on the object's futex word with every other pending operation
//! of the process and wakes the task when the object turns ready (or
//! disconnected); the task then tries again. Dropping a pending future
//! withdraws its registration; nothing is consumed by a future that did
//! not complete.
//!
//! They run on any executor (tokio, async-std, smol, `futures::executor`).
//! Process exit and pool results have no futex word: their futures are
//! re-polled on a timer of the waiter thread, every 1 ms doubling to
//! 16 ms.
//!
//! ```
//! use shmkit::Queue;
//! use std::future::Future;
//! use std::pin::pin;
//! use std::sync::Arc;
//! use std::task::{Context, Poll, Wake, Waker};
//!
//! struct Nobody;
//! impl Wake for Nobody {
//!     fn wake(self: Arc<Self>) {}
//! }
//!
//! let q = Queue::<u32>::anonymous(16, 4)?;
//! // A ready operation completes on its first poll.
//! let waker = Waker::from(Arc::new(Nobody));
//! let mut cx = Context::from_waker(&waker);
//! assert!(pin!(q.send_async(5)).poll(&mut cx).is_ready());
//! assert_eq!(pin!(q.recv_async()).poll(&mut cx), Poll::Ready(Ok(5)));
//! assert!(pin!(q.recv_async()).poll(&mut cx).is_pending());
//! # Ok::<(), shmkit::Error>(())
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::os::Deadline;
use crate::process::{AsyncResult, ExitStatus, TaskError};
use crate::queue::spsc::{Consumer, Producer};
use crate::queue::typed::{Codec, GetError};
use crate::queue::{
    Connection, MpmcReceiver, MpmcSender, Queue, RecvError, SendError, TryRecvError, TrySendError,
};
use crate::select::watcher::{Probe, WakerRegistration};
use crate::select::{MpmcWatch, PoolFuture};
use crate::Process;

/// A pending operation's registration with the waiter thread.
#[derive(Default)]
struct Arm {
    reg: Option<WakerRegistration>,
}

impl Arm {
    /// Makes sure the task is woken when `probe` turns ready (a new
    /// registration unless one is still pending; then only the waker is
    /// updated).
    fn wait<T>(&mut self, cx: &Context<'_>, probe: impl FnOnce() -> Probe) -> Poll<T> {
        match &self.reg {
            Some(r) if r.is_pending() => r.update(cx.waker()),
            _ => self.reg = Some(WakerRegistration::new(Some(probe()), None, cx.waker())),
        }
        Poll::Pending
    }

    /// Makes sure the task is woken after the next step of a doubling
    /// timer (1 ms to 16 ms): for conditions without a futex word.
    fn tick<T>(&mut self, cx: &Context<'_>, step: &mut Duration) -> Poll<T> {
        match &self.reg {
            Some(r) if r.is_pending() => r.update(cx.waker()),
            _ => {
                let due = Deadline::after(*step);
                *step = (*step * 2).min(Duration::from_millis(16));
                self.reg = Some(WakerRegistration::new(None, Some(due), cx.waker()));
            }
        }
        Poll::Pending
    }

    /// The operation completed: withdraw.
    fn done<T>(&mut self, out: T) -> Poll<T> {
        self.reg = None;
        Poll::Ready(out)
    }
}

impl std::fmt::Debug for Arm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arm")
            .field("registered", &self.reg.is_some())
            .finish()
    }
}

fn mpmc_probe(queue: &crate::queue::MpmcQueue, send: bool) -> Probe {
    Box::new(MpmcWatch {
        queue: queue.clone(),
        send,
    })
}

// ---------------------------------------------------------------- typed

/// The future of [`Queue::recv_async`].
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct QueueRecv<'a, T, C> {
    queue: &'a Queue<T, C>,
    arm: Arm,
}

impl<T, C: Codec<T>> Future for QueueRecv<'_, T, C> {
    type Output = Result<T, GetError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match this.queue.try_recv() {
            Err(GetError::Empty) => {
                let q = this.queue;
                this.arm.wait(cx, || mpmc_probe(q.as_mpmc(), false))
            }
            r => this.arm.done(r),
        }
    }
}

/// The future of [`Queue::send_async`].
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct QueueSend<'a, T, C> {
    queue: &'a Queue<T, C>,
    value: Option<T>,
    arm: Arm,
}

// The value is moved in and out by value, never pinned in place.
impl<T, C> Unpin for QueueSend<'_, T, C> {}

impl<T, C: Codec<T>> Future for QueueSend<'_, T, C> {
    type Output = Result<(), SendError<T>>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(value) = this.value.take() else {
            panic!("QueueSend polled after completion");
        };
        match this.queue.try_send(value) {
            Ok(()) => this.arm.done(Ok(())),
            Err(TrySendError::Full(v)) => {
                this.value = Some(v);
                let q = this.queue;
                this.arm.wait(cx, || mpmc_probe(q.as_mpmc(), true))
            }
            Err(TrySendError::Disconnected(v)) => this.arm.done(Err(SendError::Disconnected(v))),
            Err(TrySendError::TooLarge(v)) => this.arm.done(Err(SendError::TooLarge(v))),
        }
    }
}

impl<T, C: Codec<T>> Queue<T, C> {
    /// Receives a value, waiting asynchronously while the queue is empty
    /// (see [`aio`](crate::aio)).
    pub fn recv_async(&self) -> QueueRecv<'_, T, C> {
        QueueRecv {
            queue: self,
            arm: Arm::default(),
        }
    }

    /// Sends `value`, waiting asynchronously while the queue is full.
    pub fn send_async(&self, value: T) -> QueueSend<'_, T, C> {
        QueueSend {
            queue: self,
            value: Some(value),
            arm: Arm::default(),
        }
    }
}

// ---------------------------------------------------------------- bytes

/// Maps a try-receive error to the outcome of a blocking receive; `None`
/// for "empty" (wait).
fn recv_outcome<R>(r: Result<R, TryRecvError>) -> Option<Result<R, RecvError>> {
    match r {
        Ok(v) => Some(Ok(v)),
        Err(TryRecvError::Empty) => None,
        Err(TryRecvError::Disconnected) => Some(Err(RecvError::Disconnected)),
        Err(TryRecvError::Corrupt(c)) => Some(Err(RecvError::Corrupt(c))),
    }
}

/// Maps a try-send error to the outcome of a blocking send; `Err(msg)`
/// for "full" (wait).
fn send_outcome(r: Result<(), TrySendError<&[u8]>>) -> Result<Result<(), SendError<&[u8]>>, ()> {
    match r {
        Ok(()) => Ok(Ok(())),
        Err(TrySendError::Full(_)) => Err(()),
        Err(TrySendError::Disconnected(m)) => Ok(Err(SendError::Disconnected(m))),
        Err(TrySendError::TooLarge(m)) => Ok(Err(SendError::TooLarge(m))),
    }
}

/// The future of [`MpmcReceiver::recv_async`].
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct BytesRecv<'a> {
    rx: &'a MpmcReceiver,
    arm: Arm,
}

impl Future for BytesRecv<'_> {
    type Output = Result<Vec<u8>, RecvError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match recv_outcome(this.rx.try_recv_with(|m| m.to_vec())) {
            Some(r) => this.arm.done(r),
            None => {
                let rx = this.rx;
                this.arm.wait(cx, || mpmc_probe(&rx.queue(), false))
            }
        }
    }
}

/// The future of [`MpmcSender::send_async`].
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct BytesSend<'a, 'm> {
    tx: &'a MpmcSender,
    msg: &'m [u8],
    arm: Arm,
}

impl<'m> Future for BytesSend<'_, 'm> {
    type Output = Result<(), SendError<&'m [u8]>>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match send_outcome(this.tx.try_send(this.msg)) {
            Ok(r) => this.arm.done(r),
            Err(()) => {
                let tx = this.tx;
                this.arm.wait(cx, || mpmc_probe(&tx.queue(), true))
            }
        }
    }
}

impl MpmcReceiver {
    /// Receives a message, waiting asynchronously while the queue is
    /// empty (see [`aio`](crate::aio)).
    pub fn recv_async(&self) -> BytesRecv<'_> {
        BytesRecv {
            rx: self,
            arm: Arm::default(),
        }
    }
}

impl MpmcSender {
    /// Sends `msg`, waiting asynchronously while the queue is full.
    pub fn send_async<'m>(&self, msg: &'m [u8]) -> BytesSend<'_, 'm> {
        BytesSend {
            tx: self,
            msg,
            arm: Arm::default(),
        }
    }
}

/// The future of [`Consumer::pop_async`] and [`Connection::recv_async`].
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct RingPop<'a> {
    rx: &'a mut Consumer,
    arm: Arm,
}

impl Future for RingPop<'_> {
    type Output = Result<Vec<u8>, RecvError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut buf = Vec::new();
        match recv_outcome(this.rx.try_pop(&mut buf)) {
            Some(r) => this.arm.done(r.map(|()| buf)),
            None => {
                let rx = &*this.rx;
                this.arm.wait(cx, || Box::new(rx.watch(false)))
            }
        }
    }
}

/// The future of [`Producer::push_async`] and [`Connection::send_async`].
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct RingPush<'a, 'm> {
    tx: &'a mut Producer,
    msg: &'m [u8],
    arm: Arm,
}

impl<'m> Future for RingPush<'_, 'm> {
    type Output = Result<(), SendError<&'m [u8]>>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let msg = this.msg;
        match send_outcome(this.tx.try_push(msg)) {
            Ok(r) => this.arm.done(r),
            Err(()) => {
                let tx = &*this.tx;
                this.arm.wait(cx, || Box::new(tx.watch(msg.len())))
            }
        }
    }
}

impl Consumer {
    /// Pops a frame, waiting asynchronously while the ring is empty (see
    /// [`aio`](crate::aio)).
    pub fn pop_async(&mut self) -> RingPop<'_> {
        RingPop {
            rx: self,
            arm: Arm::default(),
        }
    }
}

impl Producer {
    /// Pushes `msg`, waiting asynchronously while the ring is full.
    pub fn push_async<'m>(&mut self, msg: &'m [u8]) -> RingPush<'_, 'm> {
        RingPush {
            tx: self,
            msg,
            arm: Arm::default(),
        }
    }
}

impl Connection {
    /// Receives a message, waiting asynchronously while none is waiting;
    /// `Disconnected` is end-of-file (see [`aio`](crate::aio)).
    pub fn recv_async(&mut self) -> RingPop<'_> {
        RingPop {
            rx: self.rx_consumer(),
            arm: Arm::default(),
        }
    }

    /// Sends `msg`, waiting asynchronously while the pipe is full.
    pub fn send_async<'m>(&mut self, msg: &'m [u8]) -> RingPush<'_, 'm> {
        RingPush {
            tx: self.tx_producer(),
            msg,
            arm: Arm::default(),
        }
    }
}

// ---------------------------------------------------------------- processes and pools

/// The future of [`Process::join_async`].
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct Join<'a> {
    process: &'a Process,
    step: Duration,
    arm: Arm,
}

impl Future for Join<'_> {
    type Output = std::io::Result<ExitStatus>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match this.process.join_timeout(Duration::ZERO) {
            Ok(Some(status)) => this.arm.done(Ok(status)),
            Ok(None) => this.arm.tick(cx, &mut this.step),
            Err(e) => this.arm.done(Err(e)),
        }
    }
}

impl Process {
    /// Waits asynchronously for the child to end (see [`aio`](crate::aio)).
    pub fn join_async(&self) -> Join<'_> {
        Join {
            process: self,
            step: Duration::from_millis(1),
            arm: Arm::default(),
        }
    }
}

/// A pool's pending result, as the awaitable [`Outcome`] sees it.
pub trait PoolResult {
    /// What awaiting it gives.
    type Output;
    /// Whether the result has arrived (non-blocking).
    fn is_done(&self) -> bool;
    /// The result; called once [`is_done`](Self::is_done) said so.
    fn take_result(&self) -> Self::Output;
}

impl<R: DeserializeOwned> PoolResult for AsyncResult<R> {
    type Output = Result<R, TaskError>;
    fn is_done(&self) -> bool {
        self.ready()
    }
    fn take_result(&self) -> Self::Output {
        self.get()
    }
}

impl<R: DeserializeOwned> PoolResult for PoolFuture<R> {
    type Output = Result<R, TaskError>;
    fn is_done(&self) -> bool {
        self.done()
    }
    fn take_result(&self) -> Self::Output {
        self.result()
    }
}

/// Awaits a pool result ([`AsyncResult`], the executor's future):
/// `shmkit::aio::Outcome::new(&result).await`, or `result.get_async()`.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct Outcome<'a, P> {
    pending: &'a P,
    step: Duration,
    arm: Arm,
}

impl<'a, P: PoolResult> Outcome<'a, P> {
    /// Awaits `pending`.
    pub fn new(pending: &'a P) -> Self {
        Outcome {
            pending,
            step: Duration::from_millis(1),
            arm: Arm::default(),
        }
    }
}

impl<P: PoolResult> Future for Outcome<'_, P> {
    type Output = P::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.pending.is_done() {
            let r = this.pending.take_result();
            return this.arm.done(r);
        }
        this.arm.tick(cx, &mut this.step)
    }
}

impl<R: DeserializeOwned> AsyncResult<R> {
    /// Waits asynchronously for the result (see [`aio`](crate::aio)).
    pub fn get_async(&self) -> Outcome<'_, Self> {
        Outcome::new(self)
    }
}

impl<R: DeserializeOwned> PoolFuture<R> {
    /// Waits asynchronously for the result (see [`aio`](crate::aio)).
    pub fn result_async(&self) -> Outcome<'_, Self> {
        Outcome::new(self)
    }
}

// ---------------------------------------------------------------- tokio

#[cfg(feature = "tokio")]
pub use self::tokio_fd::AsyncReadyFd;

#[cfg(feature = "tokio")]
mod tokio_fd {
    use crate::select::{ReadyFd, Selected, Watchable};
    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;

    /// A [`ReadyFd`] registered with tokio's reactor (feature `tokio`):
    /// one task waits on many shmkit receivers at once, without a thread
    /// per queue.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use shmkit::aio::AsyncReadyFd;
    /// use shmkit::Queue;
    ///
    /// let (a, b) = (Queue::<u32>::anonymous(16, 4)?, Queue::<u32>::anonymous(16, 4)?);
    /// let fd = AsyncReadyFd::new(&[&a, &b])?;
    /// b.send(2).unwrap();
    /// let ready = fd.ready().await?;
    /// assert_eq!(ready[0].index, 1);
    /// assert_eq!(b.try_recv()?, 2);
    /// # Ok(())
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct AsyncReadyFd {
        inner: AsyncFd<ReadyFd>,
    }

    impl AsyncReadyFd {
        /// A readiness fd over `members`, registered with the current
        /// tokio runtime.
        pub fn new(members: &[&dyn Watchable]) -> std::io::Result<Self> {
            let fd = ReadyFd::new(members)?;
            // SAFETY: `ReadyFd` owns its eventfd (kept open by the
            // registration it holds) and `as_raw_fd` always returns that
            // one descriptor, for as long as the `AsyncFd` owns it.
            let inner = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?;
            Ok(AsyncReadyFd { inner })
        }

        /// Waits until at least one member is ready and returns those
        /// ready (take them with the try-calls before calling again: the
        /// next call re-arms the fd first).
        pub async fn ready(&self) -> std::io::Result<Vec<Selected>> {
            let fd = self.inner.get_ref();
            // The caller took what the last call returned: watch again.
            fd.rearm();
            loop {
                let mut guard = self.inner.readable().await?;
                guard.clear_ready();
                let ready = fd.ready();
                if !ready.is_empty() {
                    return Ok(ready);
                }
                // Taken by another receiver meanwhile: watch again.
                fd.rearm();
            }
        }

        /// The underlying [`ReadyFd`].
        pub fn get_ref(&self) -> &ReadyFd {
            self.inner.get_ref()
        }
    }
}
