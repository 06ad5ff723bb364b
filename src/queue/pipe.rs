//! [`Pipe`]: a duplex message channel between two processes (Python's
//! `multiprocessing.Pipe`), made of two [`SpscRing`]s, one per direction.
//!
//! # Ownership across `fork`
//!
//! After a fork both processes hold copies of both [`Connection`]s. An end
//! belongs to the process that uses it: the first `send`/`recv`/`poll` on a
//! connection in a forked child takes both of its rings' roles over from
//! the parent (the check is a comparison of cached pids, no syscall).
//! Dropping an end gives it up only in the process that holds it, so the
//! parent's copy of the child's end, dropped after the child has used it,
//! changes nothing, and a child that exits without using an inherited end
//! gives up nothing. Drop the parent's copy of the child's end only once
//! the child has used it (e.g. after the first message came back): until
//! then that end is the parent's, and dropping it may read as end-of-file
//! on the other side. `recv` returns [`RecvError::Disconnected`]
//! (end-of-file) once the other end was dropped, closed, or its process
//! exited, and every message it sent was received.

use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{AttachError, Error};
use crate::os::Deadline;
use crate::queue::error::{RecvError, RecvTimeoutError, SendError, TryRecvError, TrySendError};
use crate::queue::spsc::{Consumer, EndpointError, Producer, SpscRing};
use crate::segment::Segment;

/// Default capacity of each direction of a pipe, in bytes.
pub const DEFAULT_PIPE_CAPACITY: usize = 1 << 16;

/// Constructors of duplex pipes; see [`Connection`].
///
/// ```
/// use shmkit::queue::Pipe;
///
/// let (mut a, mut b) = Pipe::duplex()?;
/// a.send(b"ping")?;
/// assert_eq!(b.recv()?, b"ping");
/// b.send_value(&(1u32, "pong".to_string()))?;
/// let v: (u32, String) = a.recv_value()?;
/// assert_eq!(v, (1, "pong".to_string()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Pipe;

/// Why a typed send or receive failed.
#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    /// The other end is gone (end-of-file).
    #[error("the other end of the pipe closed or its process exited")]
    Disconnected,
    /// The message is larger than the pipe's capacity.
    #[error("message of {0} bytes is larger than the pipe can carry")]
    TooLarge(usize),
    /// The shared state is corrupt.
    #[error("pipe is corrupt: {0}")]
    Corrupt(&'static str),
    /// No message arrived before the timeout.
    #[error("timed out")]
    Timeout,
    /// Encoding the value failed, or the received bytes did not decode as
    /// the requested type (that message is consumed; the pipe stays usable).
    #[error("serialization error: {0}")]
    Codec(#[from] postcard::Error),
}

impl From<RecvError> for PipeError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Disconnected => PipeError::Disconnected,
            RecvError::Corrupt(c) => PipeError::Corrupt(c),
        }
    }
}

impl From<RecvTimeoutError> for PipeError {
    fn from(e: RecvTimeoutError) -> Self {
        match e {
            RecvTimeoutError::Disconnected => PipeError::Disconnected,
            RecvTimeoutError::Timeout => PipeError::Timeout,
            RecvTimeoutError::Corrupt(c) => PipeError::Corrupt(c),
        }
    }
}

fn endpoint_err(e: EndpointError) -> Error {
    match e {
        EndpointError::Corrupt(c) => Error::Attach(AttachError::Corrupt(c)),
        EndpointError::AlreadyTaken(..) => {
            Error::InvalidArgument("this end of the pipe is already open in a live process")
        }
        EndpointError::Closed(_) => Error::InvalidArgument("this end of the pipe was closed"),
    }
}

/// [`endpoint_err`] for `open`, which reports [`AttachError`]s.
fn endpoint_attach_err(e: EndpointError) -> AttachError {
    use std::io::{Error as IoError, ErrorKind};
    match e {
        EndpointError::Corrupt(c) => AttachError::Corrupt(c),
        e @ EndpointError::AlreadyTaken(..) => AttachError::Io(IoError::other(e.to_string())),
        e @ EndpointError::Closed(_) => {
            AttachError::Io(IoError::new(ErrorKind::BrokenPipe, e.to_string()))
        }
    }
}

fn names(name: &str) -> (String, String) {
    (format!("{name}.ab"), format!("{name}.ba"))
}

impl Pipe {
    /// Two connected ends over anonymous segments, for use across `fork`
    /// (each direction holds [`DEFAULT_PIPE_CAPACITY`] bytes).
    pub fn duplex() -> Result<(Connection, Connection), Error> {
        Self::duplex_with_capacity(DEFAULT_PIPE_CAPACITY)
    }

    /// [`duplex`](Pipe::duplex) with `capacity` bytes per direction (a power
    /// of two).
    pub fn duplex_with_capacity(capacity: usize) -> Result<(Connection, Connection), Error> {
        let ab = SpscRing::anonymous(capacity)?;
        let ba = SpscRing::anonymous(capacity)?;
        Self::ends(&ab, &ba)
    }

    /// Two connected ends in this process's heap (threads only).
    pub fn in_process(capacity: usize) -> Result<(Connection, Connection), Error> {
        let ab = SpscRing::in_process(capacity)?;
        let ba = SpscRing::in_process(capacity)?;
        Self::ends(&ab, &ba)
    }

    fn ends(ab: &SpscRing, ba: &SpscRing) -> Result<(Connection, Connection), Error> {
        let a = Connection::new(
            ab.producer().map_err(endpoint_err)?,
            ba.consumer().map_err(endpoint_err)?,
        );
        let b = Connection::new(
            ba.producer().map_err(endpoint_err)?,
            ab.consumer().map_err(endpoint_err)?,
        );
        Ok((a, b))
    }

    /// Creates a named pipe (two segments, `NAME.ab` and `NAME.ba`) and
    /// returns the creator's end; another process calls [`Pipe::open`] for
    /// the other. This process unlinks the names when the end is dropped.
    pub fn create(name: &str, capacity: usize) -> Result<Connection, Error> {
        let (n_ab, n_ba) = names(name);
        let ab = SpscRing::create(&n_ab, capacity)?;
        let ba = SpscRing::create(&n_ba, capacity)?;
        Ok(Connection::new(
            ab.producer().map_err(endpoint_err)?,
            ba.consumer().map_err(endpoint_err)?,
        ))
    }

    /// Opens the named pipe, or creates it if there is none, and returns
    /// whichever of its two ends is free: of two processes calling this
    /// with the same name (in any order, or at the same moment), one gets
    /// each end. Race-free: both rings are made with
    /// [`SpscRing::open_or_create`]
    /// (the names live while any process holds them), and each end is
    /// taken by claiming its two ring roles, which only one live process
    /// can hold. A third process gets an error while both ends are held
    /// by live processes; an end whose holder dropped it or died is free
    /// again.
    ///
    /// ```
    /// use shmkit::queue::Pipe;
    ///
    /// let name = format!("doc-pipe-ooc-{}", std::process::id());
    /// let mut a = Pipe::open_or_create(&name, 4096)?; // made it: one end
    /// let mut b = Pipe::open_or_create(&name, 4096)?; // found it: the other
    /// a.send(b"hello")?;
    /// assert_eq!(b.recv()?, b"hello");
    /// assert!(Pipe::open_or_create(&name, 4096).is_err()); // both ends taken
    /// drop((a, b));
    /// // Only this process ever held it: the names stay for a later opener
    /// // (the rendezvous lifetime of `open_or_create`) until removed.
    /// Pipe::unlink(&name)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_or_create(name: &str, capacity: usize) -> Result<Connection, Error> {
        let (n_ab, n_ba) = names(name);
        let ab = SpscRing::open_or_create(&n_ab, capacity)?;
        let ba = SpscRing::open_or_create(&n_ba, capacity)?;
        // End A sends on `ab` and receives on `ba`; end B the opposite.
        // The first role of each end decides which end a caller gets.
        if let Ok(tx) = ab.producer() {
            return Ok(Connection::new(tx, ba.consumer().map_err(endpoint_err)?));
        }
        let tx = ba.producer().map_err(endpoint_err)?;
        Ok(Connection::new(tx, ab.consumer().map_err(endpoint_err)?))
    }

    /// Removes the names of the named pipe `name` (both directions), as
    /// [`Segment::unlink`](crate::Segment::unlink) does for one segment:
    /// ends already open keep working. A pipe from
    /// [`open_or_create`](Self::open_or_create) that no second process
    /// ever opened keeps its names for a later opener; this removes them.
    /// `NotFound` if neither name exists.
    ///
    /// ```
    /// use shmkit::queue::Pipe;
    ///
    /// let name = format!("doc-pipe-unlink-{}", std::process::id());
    /// let end = Pipe::open_or_create(&name, 4096)?;
    /// Pipe::unlink(&name)?;
    /// assert!(Pipe::open(&name).is_err());
    /// assert!(Pipe::unlink(&name).is_err()); // already gone
    /// # drop(end);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unlink(name: &str) -> Result<(), AttachError> {
        let (n_ab, n_ba) = names(name);
        match (Segment::unlink(&n_ab), Segment::unlink(&n_ba)) {
            (Err(e), _) | (_, Err(e)) if !matches!(e, AttachError::NotFound(_)) => Err(e),
            (Err(e), Err(_)) => Err(e),
            _ => Ok(()),
        }
    }

    /// Opens the other end of the named pipe made by [`Pipe::create`].
    ///
    /// Like every other `open`, it fails with an [`AttachError`]: a
    /// missing name is [`NotFound`](AttachError::NotFound); an end that a
    /// live process already holds, or that was closed, is an
    /// [`Io`](AttachError::Io) error saying so (of kind `BrokenPipe` for a
    /// closed end).
    ///
    /// ```
    /// use shmkit::queue::Pipe;
    /// use shmkit::AttachError;
    ///
    /// let name = format!("doc-pipe-open-{}", std::process::id());
    /// assert!(matches!(Pipe::open(&name), Err(AttachError::NotFound(_))));
    /// let mut a = Pipe::create(&name, 4096)?;
    /// let mut b = Pipe::open(&name)?;
    /// a.send(b"hi")?;
    /// assert_eq!(b.recv()?, b"hi");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(name: &str) -> Result<Connection, AttachError> {
        let (n_ab, n_ba) = names(name);
        let ab = SpscRing::open(&n_ab)?;
        let ba = SpscRing::open(&n_ba)?;
        Ok(Connection::new(
            ba.producer().map_err(endpoint_attach_err)?,
            ab.consumer().map_err(endpoint_attach_err)?,
        ))
    }
}

/// One end of a [`Pipe`]: sends on one ring, receives on the other.
///
/// ```
/// use shmkit::queue::Pipe;
/// use std::time::Duration;
///
/// let (mut a, mut b) = Pipe::in_process(1024)?;
/// assert!(!b.poll(Duration::from_millis(1)));
/// a.send(b"x")?;
/// assert!(b.poll(Duration::from_millis(1)));
/// drop(a);
/// assert_eq!(b.recv()?, b"x");
/// assert!(b.recv().is_err()); // end-of-file
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Connection {
    tx: Producer,
    rx: Consumer,
    scratch: Vec<u8>,
}

impl Connection {
    fn new(tx: Producer, rx: Consumer) -> Self {
        Self {
            tx,
            rx,
            scratch: Vec::new(),
        }
    }

    /// Takes both directions over in a forked child (the first use there),
    /// so that this process's exit reads as end-of-file on the other end.
    #[inline]
    fn claim(&mut self) {
        self.tx.claim();
        self.rx.claim();
    }

    /// Sends one message, blocking while the pipe is full.
    pub fn send<'a>(&mut self, msg: &'a [u8]) -> Result<(), SendError<&'a [u8]>> {
        self.claim();
        self.tx.push(msg)
    }

    /// Receives one message, blocking until one arrives; `Disconnected` is
    /// end-of-file.
    pub fn recv(&mut self) -> Result<Vec<u8>, RecvError> {
        let mut v = Vec::new();
        self.recv_into(&mut v)?;
        Ok(v)
    }

    /// Receives one message into `buf` (replacing its contents, reusing
    /// its allocation).
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<(), RecvError> {
        self.claim();
        self.rx.pop(buf)
    }

    /// [`recv`](Connection::recv) with a timeout.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>, RecvTimeoutError> {
        self.claim();
        let mut v = Vec::new();
        self.rx.pop_timeout(&mut v, timeout)?;
        Ok(v)
    }

    /// Whether a `recv` would return at once (a message is waiting, or the
    /// other end is gone), waiting up to `timeout` for that to become true.
    pub fn poll(&mut self, timeout: Duration) -> bool {
        self.claim();
        !matches!(
            self.rx.wait_ready(Some(Deadline::after(timeout))),
            Err(RecvTimeoutError::Timeout)
        )
    }

    /// Serializes `value` with postcard and sends it.
    pub fn send_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), PipeError> {
        self.claim();
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        let r = match postcard::to_extend(value, buf) {
            Ok(b) => {
                let r = match self.tx.push(&b) {
                    Ok(()) => Ok(()),
                    Err(SendError::Disconnected(_)) => Err(PipeError::Disconnected),
                    Err(SendError::TooLarge(m)) => Err(PipeError::TooLarge(m.len())),
                };
                self.scratch = b;
                r
            }
            Err(e) => Err(PipeError::Codec(e)),
        };
        r
    }

    /// Receives one message and deserializes it as `T`. A message that does
    /// not decode is consumed and reported as [`PipeError::Codec`]; the
    /// next call reads the next message.
    pub fn recv_value<T: DeserializeOwned>(&mut self) -> Result<T, PipeError> {
        self.claim();
        let grant = self.rx.read_blocking(None)?;
        let v = postcard::from_bytes(&grant);
        grant.release();
        Ok(v?)
    }

    /// Receives one message if one is waiting (never blocks);
    /// `Disconnected` is end-of-file.
    ///
    /// ```
    /// use shmkit::queue::{Pipe, TryRecvError};
    ///
    /// let (mut a, mut b) = Pipe::in_process(256)?;
    /// assert_eq!(b.try_recv(), Err(TryRecvError::Empty));
    /// a.try_send(b"hi").unwrap();
    /// assert_eq!(b.try_recv().unwrap(), b"hi");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_recv(&mut self) -> Result<Vec<u8>, TryRecvError> {
        self.claim();
        let mut v = Vec::new();
        self.rx.try_pop(&mut v)?;
        Ok(v)
    }

    /// Sends one message if it fits now (never blocks).
    pub fn try_send<'a>(&mut self, msg: &'a [u8]) -> Result<(), TrySendError<&'a [u8]>> {
        self.claim();
        self.tx.try_push(msg)
    }

    /// The receiving ring's consumer (select's and async's hooks).
    pub(crate) fn rx_consumer(&mut self) -> &mut Consumer {
        self.claim();
        &mut self.rx
    }

    /// The receiving ring's consumer, as is (select's readiness check).
    pub(crate) fn rx_ref(&self) -> &Consumer {
        &self.rx
    }

    /// The sending ring's producer (async's hook).
    pub(crate) fn tx_producer(&mut self) -> &mut Producer {
        self.claim();
        &mut self.tx
    }

    /// Closes both directions for good: the other end's `recv` gets
    /// end-of-file after draining, its `send` gets `Disconnected`.
    pub fn close(&mut self) {
        self.claim();
        self.tx.close();
        self.rx.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "named segments need shm_open")]
    fn open_reports_attach_errors() {
        let name = format!("shmkit-unit-pipe-open-{}", std::process::id());
        assert!(matches!(Pipe::open(&name), Err(AttachError::NotFound(_))));
        let mut a = Pipe::create(&name, 4096).unwrap();
        let mut b = Pipe::open(&name).unwrap();
        // The other end is taken by a live handle (this process's `b`).
        match Pipe::open(&name) {
            Err(AttachError::Io(e)) => {
                assert!(e.to_string().contains("already held"), "{e}");
            }
            other => panic!("expected a busy end, got {other:?}"),
        }
        b.send(b"still works").unwrap();
        assert_eq!(a.recv().unwrap(), b"still works");
    }
}
