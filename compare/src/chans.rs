//! One sending end ([`Tx`]) and one receiving end ([`Rx`]) per system, each
//! used the way that system's users use it.
//!
//! Every message is `size` bytes whose first 8 (or fewer) bytes carry its
//! sequence number, so the receiver checks exactly-once, in-order delivery
//! and the message length.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use shmkit::queue::{
    Connection, Consumer, MpmcReceiver, MpmcSender, PodQueue, Producer, Queue, TryRecvError,
    TrySendError,
};

/// How an end waits when it cannot make progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Poll in a loop with `std::hint::spin_loop()`.
    Busy,
    /// The system's blocking call (which may spin briefly, then sleep).
    Block,
}

/// A sending end.
pub trait Tx {
    /// Sends message `seq` (waiting per the end's [`Mode`] while full).
    fn send(&mut self, seq: u64);
}

/// A receiving end.
pub trait Rx {
    /// Receives the next message: its sequence number and length.
    fn recv(&mut self) -> (u64, usize);
}

/// Writes `seq` into the first bytes of `buf`.
pub fn stamp(buf: &mut [u8], seq: u64) {
    let n = buf.len().min(8);
    buf[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
}

/// Reads the sequence number [`stamp`] wrote.
pub fn seq_of(buf: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = buf.len().min(8);
    b[..n].copy_from_slice(&buf[..n]);
    u64::from_le_bytes(b)
}

fn spin() {
    std::hint::spin_loop();
}

// ---------------------------------------------------------------- shmkit

/// shmkit SPSC byte ring, producer side.
pub struct SpscTx(pub Producer, pub Vec<u8>, pub Mode);
impl Tx for SpscTx {
    fn send(&mut self, seq: u64) {
        stamp(&mut self.1, seq);
        match self.2 {
            Mode::Block => self.0.push(&self.1).expect("spsc push"),
            Mode::Busy => loop {
                match self.0.try_push(&self.1) {
                    Ok(()) => break,
                    Err(TrySendError::Full(_)) => spin(),
                    Err(e) => panic!("spsc try_push: {e}"),
                }
            },
        }
    }
}

/// shmkit SPSC byte ring, consumer side.
pub struct SpscRx(pub Consumer, pub Vec<u8>, pub Mode);
impl Rx for SpscRx {
    fn recv(&mut self) -> (u64, usize) {
        match self.2 {
            Mode::Block => self.0.pop(&mut self.1).expect("spsc pop"),
            Mode::Busy => loop {
                match self.0.try_pop(&mut self.1) {
                    Ok(()) => break,
                    Err(TryRecvError::Empty) => spin(),
                    Err(e) => panic!("spsc try_pop: {e}"),
                }
            },
        }
        (seq_of(&self.1), self.1.len())
    }
}

/// shmkit MPMC byte queue, sender side.
pub struct MpmcTx(pub MpmcSender, pub Vec<u8>, pub Mode);
impl Tx for MpmcTx {
    fn send(&mut self, seq: u64) {
        stamp(&mut self.1, seq);
        match self.2 {
            Mode::Block => self.0.send(&self.1).expect("mpmc send"),
            Mode::Busy => loop {
                match self.0.try_send(&self.1) {
                    Ok(()) => break,
                    Err(TrySendError::Full(_)) => spin(),
                    Err(e) => panic!("mpmc try_send: {e}"),
                }
            },
        }
    }
}

/// shmkit MPMC byte queue, receiver side.
pub struct MpmcRx(pub MpmcReceiver, pub Vec<u8>, pub Mode);
impl Rx for MpmcRx {
    fn recv(&mut self) -> (u64, usize) {
        let n = match self.2 {
            Mode::Block => self.0.recv(&mut self.1).expect("mpmc recv"),
            Mode::Busy => loop {
                match self.0.try_recv(&mut self.1) {
                    Ok(n) => break n,
                    Err(TryRecvError::Empty) => spin(),
                    Err(e) => panic!("mpmc try_recv: {e}"),
                }
            },
        };
        (seq_of(&self.1[..n]), n)
    }
}

/// shmkit typed `Queue<Vec<u8>>` (postcard), sender side: each message is
/// a fresh `Vec`, as a user sending owned buffers would.
pub struct TypedTx(pub Queue<Vec<u8>>, pub Vec<u8>, pub Mode);
impl Tx for TypedTx {
    fn send(&mut self, seq: u64) {
        stamp(&mut self.1, seq);
        let mut v = self.1.clone();
        match self.2 {
            Mode::Block => self.0.send(v).expect("queue send"),
            Mode::Busy => loop {
                match self.0.try_send(v) {
                    Ok(()) => break,
                    Err(TrySendError::Full(back)) => {
                        v = back;
                        spin()
                    }
                    Err(e) => panic!("queue try_send: {e}"),
                }
            },
        }
    }
}

/// shmkit typed `Queue<Vec<u8>>`, receiver side.
pub struct TypedRx(pub Queue<Vec<u8>>, pub Mode);
impl Rx for TypedRx {
    fn recv(&mut self) -> (u64, usize) {
        let v = match self.1 {
            Mode::Block => self.0.recv().expect("queue recv"),
            Mode::Busy => loop {
                match self.0.try_recv() {
                    Ok(v) => break v,
                    Err(shmkit::queue::GetError::Empty) => spin(),
                    Err(e) => panic!("queue try_recv: {e}"),
                }
            },
        };
        (seq_of(&v), v.len())
    }
}

/// shmkit `PodQueue<[u8; N]>` (zero-copy typed), sender side.
pub struct PodTx<const N: usize>(pub PodQueue<[u8; N]>, pub [u8; N], pub Mode);
impl<const N: usize> Tx for PodTx<N>
where
    [u8; N]: bytemuck::Pod,
{
    fn send(&mut self, seq: u64) {
        stamp(&mut self.1, seq);
        match self.2 {
            Mode::Block => self.0.send(self.1).expect("pod send"),
            Mode::Busy => loop {
                match self.0.try_send(self.1) {
                    Ok(()) => break,
                    Err(TrySendError::Full(_)) => spin(),
                    Err(e) => panic!("pod try_send: {e}"),
                }
            },
        }
    }
}

/// shmkit `PodQueue<[u8; N]>`, receiver side.
pub struct PodRx<const N: usize>(pub PodQueue<[u8; N]>, pub Mode);
impl<const N: usize> Rx for PodRx<N>
where
    [u8; N]: bytemuck::Pod,
{
    fn recv(&mut self) -> (u64, usize) {
        let v = match self.1 {
            Mode::Block => self.0.recv().expect("pod recv"),
            Mode::Busy => loop {
                match self.0.try_recv() {
                    Ok(v) => break v,
                    Err(shmkit::queue::GetError::Empty) => spin(),
                    Err(e) => panic!("pod try_recv: {e}"),
                }
            },
        };
        (seq_of(&v), N)
    }
}

/// A shmkit duplex pipe `Connection`, shared by the two halves of its use.
pub type SharedConn = std::rc::Rc<std::cell::RefCell<Connection>>;

/// Splits a connection into a sending and a receiving half.
pub fn split_conn(c: Connection, size: usize) -> (ConnTx, ConnRx) {
    let c = std::rc::Rc::new(std::cell::RefCell::new(c));
    (ConnTx(c.clone(), vec![0; size]), ConnRx(c, Vec::new()))
}

/// shmkit duplex pipe `Connection`, sending half of the use.
pub struct ConnTx(pub SharedConn, pub Vec<u8>);
impl Tx for ConnTx {
    fn send(&mut self, seq: u64) {
        stamp(&mut self.1, seq);
        self.0.borrow_mut().send(&self.1).expect("connection send");
    }
}

/// shmkit duplex pipe `Connection`, receiving half of the use.
pub struct ConnRx(pub SharedConn, pub Vec<u8>);
impl Rx for ConnRx {
    fn recv(&mut self) -> (u64, usize) {
        self.0
            .borrow_mut()
            .recv_into(&mut self.1)
            .expect("connection recv");
        (seq_of(&self.1), self.1.len())
    }
}

// ------------------------------------------------------ OS pipes, sockets

/// A byte stream (pipe or socket) carrying fixed-size messages: blocking
/// `write_all`.
pub struct StreamTx(pub std::fs::File, pub Vec<u8>);
impl Tx for StreamTx {
    fn send(&mut self, seq: u64) {
        stamp(&mut self.1, seq);
        self.0.write_all(&self.1).expect("stream write");
    }
}

/// A byte stream carrying fixed-size messages: blocking `read_exact`.
pub struct StreamRx(pub std::fs::File, pub Vec<u8>);
impl Rx for StreamRx {
    fn recv(&mut self) -> (u64, usize) {
        self.0.read_exact(&mut self.1).expect("stream read");
        (seq_of(&self.1), self.1.len())
    }
}

/// An OS pipe: (read end, write end).
pub fn os_pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just created and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// A connected pair of Unix stream sockets.
pub fn socket_pair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0, "socketpair: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just created and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

// ------------------------------------------------------------ ipc-channel

/// ipc-channel's bytes channel, sender side.
pub struct IpcTx(pub ipc_channel::ipc::IpcBytesSender, pub Vec<u8>);
impl Tx for IpcTx {
    fn send(&mut self, seq: u64) {
        stamp(&mut self.1, seq);
        self.0.send(&self.1).expect("ipc-channel send");
    }
}

/// ipc-channel's bytes channel, receiver side.
pub struct IpcRx(pub ipc_channel::ipc::IpcBytesReceiver, pub Mode);
impl Rx for IpcRx {
    fn recv(&mut self) -> (u64, usize) {
        let v = match self.1 {
            Mode::Block => self.0.recv().expect("ipc-channel recv"),
            Mode::Busy => loop {
                match self.0.try_recv() {
                    Ok(v) => break v,
                    Err(ipc_channel::TryRecvError::Empty) => spin(),
                    Err(e) => panic!("ipc-channel try_recv: {e:?}"),
                }
            },
        };
        (seq_of(&v), v.len())
    }
}

// --------------------------------------------------------------- iceoryx2

pub mod iox {
    //! iceoryx2 publish-subscribe over `[u8]` slices with loans.
    use super::*;
    use iceoryx2::port::publisher::Publisher;
    use iceoryx2::port::subscriber::Subscriber;
    use iceoryx2::port::update_connections::UpdateConnections;
    use iceoryx2::prelude::*;

    type Svc = ipc::Service;

    /// How the service treats a full subscriber buffer.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Delivery {
        /// The publisher retries until the subscriber has room.
        Lossless,
        /// The oldest unread sample is overwritten (safe overflow).
        Lossy,
    }

    fn service(
        node: &Node<Svc>,
        name: &str,
        delivery: Delivery,
        buffer: usize,
    ) -> iceoryx2::service::port_factory::publish_subscribe::PortFactory<Svc, [u8], ()> {
        let name: ServiceName = name.try_into().expect("service name");
        node.service_builder(&name)
            .publish_subscribe::<[u8]>()
            .enable_safe_overflow(delivery == Delivery::Lossy)
            .subscriber_max_buffer_size(buffer)
            .history_size(0)
            .max_publishers(1)
            .max_subscribers(1)
            .open_or_create()
            .expect("iceoryx2 service")
    }

    /// Publisher end (loans a slice, writes the message into it, sends).
    pub struct IoxTx {
        publisher: Publisher<Svc, [u8], ()>,
        msg: Vec<u8>,
        _node: Node<Svc>,
    }

    impl IoxTx {
        /// Opens (or creates) service `name` and waits until its
        /// subscriber is connected, so no message goes to nobody.
        pub fn new(name: &str, size: usize, delivery: Delivery, buffer: usize) -> IoxTx {
            let node = NodeBuilder::new().create::<Svc>().expect("iceoryx2 node");
            let svc = service(&node, name, delivery, buffer);
            let strategy = match delivery {
                Delivery::Lossless => BackpressureStrategy::RetryUntilDelivered,
                Delivery::Lossy => BackpressureStrategy::DiscardData,
            };
            let publisher = svc
                .publisher_builder()
                .initial_max_slice_len(size)
                .backpressure_strategy(strategy)
                .create()
                .expect("iceoryx2 publisher");
            let start = std::time::Instant::now();
            while svc.dynamic_config().number_of_subscribers() == 0 {
                assert!(
                    start.elapsed() < std::time::Duration::from_secs(60),
                    "iceoryx2: no subscriber connected"
                );
                std::thread::yield_now();
            }
            publisher.update_connections().expect("update_connections");
            IoxTx {
                publisher,
                msg: vec![0; size],
                _node: node,
            }
        }
    }

    impl Tx for IoxTx {
        fn send(&mut self, seq: u64) {
            stamp(&mut self.msg, seq);
            let sample = self
                .publisher
                .loan_slice_uninit(self.msg.len())
                .expect("iceoryx2 loan");
            let sample = sample.write_from_slice(&self.msg);
            sample.send().expect("iceoryx2 send");
        }
    }

    /// Subscriber end (busy-polls `receive`).
    pub struct IoxRx {
        subscriber: Subscriber<Svc, [u8], ()>,
        _node: Node<Svc>,
    }

    impl IoxRx {
        /// Opens (or creates) service `name` and subscribes. With
        /// `connect`, also waits for the publisher and connects to it now:
        /// iceoryx2 drops (even when lossless) samples sent into a full
        /// buffer that its subscriber has not connected to yet.
        pub fn new(name: &str, delivery: Delivery, buffer: usize, connect: bool) -> IoxRx {
            let node = NodeBuilder::new().create::<Svc>().expect("iceoryx2 node");
            let svc = service(&node, name, delivery, buffer);
            let subscriber = svc
                .subscriber_builder()
                .create()
                .expect("iceoryx2 subscriber");
            if connect {
                let start = std::time::Instant::now();
                while svc.dynamic_config().number_of_publishers() == 0 {
                    assert!(
                        start.elapsed() < std::time::Duration::from_secs(60),
                        "iceoryx2: no publisher connected"
                    );
                    std::thread::yield_now();
                }
                subscriber.update_connections().expect("update_connections");
            }
            IoxRx {
                subscriber,
                _node: node,
            }
        }

        /// One sample if any is there now.
        pub fn try_recv(&mut self) -> Option<(u64, usize)> {
            let s = self.subscriber.receive().expect("iceoryx2 receive")?;
            Some((seq_of(s.payload()), s.payload().len()))
        }
    }

    impl Rx for IoxRx {
        fn recv(&mut self) -> (u64, usize) {
            loop {
                if let Some(r) = self.try_recv() {
                    return r;
                }
                spin();
            }
        }
    }
}

// ------------------------------------------------------------------ shaq

/// shaq SPSC of `[u8; N]` in a shared file mapping, producer side.
pub struct ShaqTx<const N: usize>(pub shaq::spsc::Producer<[u8; N]>, pub [u8; N]);
impl<const N: usize> Tx for ShaqTx<N> {
    fn send(&mut self, seq: u64) {
        stamp(&mut self.1, seq);
        while self.0.try_write(self.1).is_err() {
            spin();
        }
    }
}

/// shaq SPSC of `[u8; N]`, consumer side.
pub struct ShaqRx<const N: usize>(pub shaq::spsc::Consumer<[u8; N]>, pub Mode);
impl<const N: usize> Rx for ShaqRx<N> {
    fn recv(&mut self) -> (u64, usize) {
        let v = match self.1 {
            Mode::Busy => loop {
                if let Some(v) = self.0.try_read() {
                    break v;
                }
                spin();
            },
            Mode::Block => self
                .0
                .read_timeout(std::time::Duration::from_secs(60))
                .expect("shaq read_timeout"),
        };
        (seq_of(&v), N)
    }
}

/// A memfd of `len` bytes for shaq's file-backed queue.
pub fn memfd(len: usize) -> std::fs::File {
    // SAFETY: the name is a valid NUL-terminated string.
    let fd = unsafe { libc::memfd_create(c"shmkit-compare-shaq".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: fd was just created and is owned by nobody else.
    let f = unsafe { std::fs::File::from_raw_fd(fd) };
    f.set_len(len as u64).expect("memfd set_len");
    f
}

// -------------------------------------------------- in-process (threads)

/// rtrb producer of `[u8; N]` (spin while full).
pub struct RtrbTx<const N: usize>(pub rtrb::Producer<[u8; N]>, pub [u8; N]);
impl<const N: usize> Tx for RtrbTx<N> {
    fn send(&mut self, seq: u64) {
        stamp(&mut self.1, seq);
        while self.0.push(self.1).is_err() {
            spin();
        }
    }
}

/// rtrb consumer of `[u8; N]` (spin while empty).
pub struct RtrbRx<const N: usize>(pub rtrb::Consumer<[u8; N]>);
impl<const N: usize> Rx for RtrbRx<N> {
    fn recv(&mut self) -> (u64, usize) {
        loop {
            if let Ok(v) = self.0.pop() {
                return (seq_of(&v), N);
            }
            spin();
        }
    }
}

/// crossbeam `ArrayQueue<[u8; N]>` (spin while full or empty).
pub struct CbQueue<const N: usize>(pub Arc<crossbeam_queue::ArrayQueue<[u8; N]>>, pub [u8; N]);
impl<const N: usize> Tx for CbQueue<N> {
    fn send(&mut self, seq: u64) {
        stamp(&mut self.1, seq);
        while self.0.push(self.1).is_err() {
            spin();
        }
    }
}
impl<const N: usize> Rx for CbQueue<N> {
    fn recv(&mut self) -> (u64, usize) {
        loop {
            if let Some(v) = self.0.pop() {
                return (seq_of(&v), N);
            }
            spin();
        }
    }
}

/// crossbeam bounded channel of `[u8; N]` (blocking send/recv).
pub struct CbChanTx<const N: usize>(pub crossbeam_channel::Sender<[u8; N]>, pub [u8; N]);
impl<const N: usize> Tx for CbChanTx<N> {
    fn send(&mut self, seq: u64) {
        stamp(&mut self.1, seq);
        self.0.send(self.1).expect("crossbeam send");
    }
}

/// crossbeam bounded channel receiver.
pub struct CbChanRx<const N: usize>(pub crossbeam_channel::Receiver<[u8; N]>);
impl<const N: usize> Rx for CbChanRx<N> {
    fn recv(&mut self) -> (u64, usize) {
        let v = self.0.recv().expect("crossbeam recv");
        (seq_of(&v), N)
    }
}

/// A process-unique name with a counter, for named services.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
