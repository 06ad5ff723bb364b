//! The systems compared, and how each is set up for each workload.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use shmkit::queue::{MpmcQueue, PodQueue, Queue, SpscRing};

use crate::chans::iox::{Delivery, IoxRx, IoxTx};
use crate::chans::*;
use crate::sys::Placement;
use crate::work::{self, Peer, Rate};

/// A system in the throughput and round-trip tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sys {
    ShmSpsc,
    ShmMpmc,
    ShmQueue,
    ShmPod,
    ShmConn,
    Pipe,
    Socket,
    IpcChannel,
    Iox,
    IoxLossy,
    Shaq,
    Rtrb,
    CbArray,
    CbChan,
    ShmSpscThreads,
    ShmMpmcThreads,
}

/// Every system, in the order of the first round.
pub const ALL: [Sys; 16] = [
    Sys::ShmSpsc,
    Sys::ShmMpmc,
    Sys::ShmQueue,
    Sys::ShmPod,
    Sys::ShmConn,
    Sys::Pipe,
    Sys::Socket,
    Sys::IpcChannel,
    Sys::Iox,
    Sys::IoxLossy,
    Sys::Shaq,
    Sys::ShmSpscThreads,
    Sys::ShmMpmcThreads,
    Sys::Rtrb,
    Sys::CbArray,
    Sys::CbChan,
];

impl Sys {
    /// The name in tables and plots.
    pub fn name(self) -> &'static str {
        match self {
            Sys::ShmSpsc => "shmkit SpscRing",
            Sys::ShmMpmc => "shmkit MpmcQueue",
            Sys::ShmQueue => "shmkit Queue<Vec<u8>>",
            Sys::ShmPod => "shmkit PodQueue<[u8;N]>",
            Sys::ShmConn => "shmkit Pipe Connection",
            Sys::Pipe => "OS pipe",
            Sys::Socket => "Unix socketpair",
            Sys::IpcChannel => "ipc-channel (bytes)",
            Sys::Iox => "iceoryx2 pub/sub (lossless)",
            Sys::IoxLossy => "iceoryx2 pub/sub (lossy)",
            Sys::Shaq => "shaq spsc<[u8;N]>",
            Sys::Rtrb => "rtrb (threads)",
            Sys::CbArray => "crossbeam ArrayQueue (threads)",
            Sys::CbChan => "crossbeam channel (threads)",
            Sys::ShmSpscThreads => "shmkit SpscRing (threads)",
            Sys::ShmMpmcThreads => "shmkit MpmcQueue (threads)",
        }
    }

    /// How its ends wait, for the report.
    pub fn how(self) -> &'static str {
        match self {
            Sys::ShmSpsc | Sys::ShmMpmc | Sys::ShmQueue | Sys::ShmPod => {
                "two processes (fork, anonymous segment); blocking push/pop (spin, then futex park); \
                 busy-poll round trips spin on try_push/try_pop with spin_loop()"
            }
            Sys::ShmConn => "two processes; named `Pipe::create`/`Pipe::open`; blocking send/recv",
            Sys::Pipe | Sys::Socket => "two processes; blocking write_all/read_exact of fixed-size frames",
            Sys::IpcChannel => "two processes; `ipc::bytes_channel`, blocking send/recv",
            Sys::Iox => {
                "two processes; `publish_subscribe::<[u8]>`, loan_slice_uninit + write_from_slice + send, \
                 RetryUntilDelivered, subscriber busy-polls receive()"
            }
            Sys::IoxLossy => {
                "as lossless but safe overflow + DiscardData; rate counts delivered samples"
            }
            Sys::Shaq => "shaq 4.0.0 (4.1 and later call `isolate_highest_one`, unstable on rustc 1.95); two processes; memfd-backed spsc, spin on try_write/try_read (blocking: read_timeout)",
            Sys::Rtrb => "two threads; spin on push/pop with spin_loop()",
            Sys::CbArray => "two threads; spin on push/pop with spin_loop()",
            Sys::CbChan => "two threads; `bounded` channel, blocking send/recv",
            Sys::ShmSpscThreads | Sys::ShmMpmcThreads => {
                "two threads, `in_process` queue; spin on try_push/try_pop (try_send/try_recv) with \
                 spin_loop(), as the rtrb and ArrayQueue rows"
            }
        }
    }

    /// Whether the peer runs in another process.
    pub fn cross_process(self) -> bool {
        !matches!(
            self,
            Sys::Rtrb | Sys::CbArray | Sys::CbChan | Sys::ShmSpscThreads | Sys::ShmMpmcThreads
        )
    }
}

/// Messages in flight a queue holds: the same depth for every system.
pub fn depth(size: usize) -> usize {
    ((1 << 20) / size).clamp(16, 1024)
}

fn ring_capacity(size: usize) -> usize {
    (depth(size) * (size + 16)).next_power_of_two().max(1 << 16)
}

/// One-way throughput of `sys` at `size` bytes.
pub fn throughput(sys: Sys, size: usize, count: u64, pl: Placement) -> Result<Rate, String> {
    match size {
        8 => tp_fixed::<8>(sys, count, pl),
        64 => tp_fixed::<64>(sys, count, pl),
        4096 => tp_fixed::<4096>(sys, count, pl),
        65536 => tp_fixed::<65536>(sys, count, pl),
        _ => Err(format!("unsupported size {size}")),
    }
}

fn e<E: std::fmt::Display>(x: E) -> String {
    x.to_string()
}

fn tp_fixed<const N: usize>(sys: Sys, count: u64, pl: Placement) -> Result<Rate, String>
where
    [u8; N]: bytemuck::Pod,
{
    let size = N;
    let d = depth(size);
    let proc_ = Peer::Process;
    match sys {
        Sys::ShmSpsc => {
            let ring = SpscRing::anonymous(ring_capacity(size)).map_err(e)?;
            let r2 = ring.clone();
            work::throughput(
                proc_,
                pl,
                count,
                size,
                move || {
                    SpscTx(
                        ring.producer().expect("producer"),
                        vec![0; size],
                        Mode::Block,
                    )
                },
                move || SpscRx(r2.consumer().expect("consumer"), Vec::new(), Mode::Block),
            )
        }
        Sys::ShmMpmc => {
            let q = MpmcQueue::anonymous(size, d).map_err(e)?;
            let q2 = q.clone();
            work::throughput(
                proc_,
                pl,
                count,
                size,
                move || MpmcTx(q.sender().expect("sender"), vec![0; size], Mode::Block),
                move || MpmcRx(q2.receiver().expect("receiver"), Vec::new(), Mode::Block),
            )
        }
        Sys::ShmQueue => {
            let q = Queue::<Vec<u8>>::anonymous(size + 16, d).map_err(e)?;
            let q2 = q.clone();
            work::throughput(
                proc_,
                pl,
                count,
                size,
                move || TypedTx(q, vec![0; size], Mode::Block),
                move || TypedRx(q2, Mode::Block),
            )
        }
        Sys::ShmPod => {
            let q = PodQueue::<[u8; N]>::anonymous(d).map_err(e)?;
            let q2 = q.clone();
            work::throughput(
                proc_,
                pl,
                count,
                size,
                move || PodTx(q, [0u8; N], Mode::Block),
                move || PodRx(q2, Mode::Block),
            )
        }
        Sys::ShmConn => {
            let name = unique_name("shmkit-compare-conn");
            let a = shmkit::Pipe::create(&name, ring_capacity(size)).map_err(e)?;
            work::throughput(
                proc_,
                pl,
                count,
                size,
                move || split_conn(a, size).0,
                move || split_conn(shmkit::Pipe::open(&name).expect("Pipe::open"), size).1,
            )
        }
        Sys::Pipe | Sys::Socket => {
            let (r, w): (OwnedFd, OwnedFd) = if sys == Sys::Pipe {
                os_pipe()
            } else {
                socket_pair()
            };
            work::throughput(
                proc_,
                pl,
                count,
                size,
                move || StreamTx(std::fs::File::from(w), vec![0; size]),
                move || StreamRx(std::fs::File::from(r), vec![0; size]),
            )
        }
        Sys::IpcChannel => {
            let (tx, rx) = ipc_channel::ipc::bytes_channel().map_err(e)?;
            work::throughput(
                proc_,
                pl,
                count,
                size,
                move || IpcTx(tx, vec![0; size]),
                move || IpcRx(rx, Mode::Block),
            )
        }
        Sys::Iox => {
            let name = unique_name("shmkit-compare-iox");
            let n2 = name.clone();
            work::throughput(
                proc_,
                pl,
                count,
                size,
                move || IoxTx::new(&name, size, Delivery::Lossless, d),
                move || IoxRx::new(&n2, Delivery::Lossless, d, true),
            )
        }
        Sys::IoxLossy => work::iox_lossy(pl, count, size, d),
        Sys::Shaq => {
            let file = memfd((d * N).next_power_of_two() * 2 + (1 << 16));
            let len = file.metadata().map_err(e)?.len() as usize;
            // SAFETY: this process initialises the file once, here, and
            // drops its producer before any peer joins; each side joins
            // once (one producer, one consumer), with the same `T`.
            unsafe { shaq::spsc::Producer::<[u8; N]>::create(&file, len) }
                .map_err(|x| format!("{x:?}"))?;
            let f2 = file.try_clone().map_err(e)?;
            work::throughput(
                proc_,
                pl,
                count,
                size,
                // SAFETY: the only producer joining this queue.
                move || {
                    ShaqTx(
                        unsafe { shaq::spsc::Producer::<[u8; N]>::join(&file) }.expect("shaq join"),
                        [0u8; N],
                    )
                },
                // SAFETY: the only consumer joining this queue.
                move || {
                    ShaqRx(
                        unsafe { shaq::spsc::Consumer::<[u8; N]>::join(&f2) }.expect("shaq join"),
                        Mode::Busy,
                    )
                },
            )
        }
        Sys::ShmSpscThreads => {
            let ring = SpscRing::in_process(ring_capacity(size)).map_err(e)?;
            let r2 = ring.clone();
            work::throughput(
                Peer::Thread,
                pl,
                count,
                size,
                move || {
                    SpscTx(
                        ring.producer().expect("producer"),
                        vec![0; size],
                        Mode::Busy,
                    )
                },
                move || SpscRx(r2.consumer().expect("consumer"), Vec::new(), Mode::Busy),
            )
        }
        Sys::ShmMpmcThreads => {
            let q = MpmcQueue::in_process(size, d).map_err(e)?;
            let q2 = q.clone();
            work::throughput(
                Peer::Thread,
                pl,
                count,
                size,
                move || MpmcTx(q.sender().expect("sender"), vec![0; size], Mode::Busy),
                move || MpmcRx(q2.receiver().expect("receiver"), Vec::new(), Mode::Busy),
            )
        }
        Sys::Rtrb => {
            let (p, c) = rtrb::RingBuffer::<[u8; N]>::new(d);
            work::throughput(
                Peer::Thread,
                pl,
                count,
                size,
                move || RtrbTx(p, [0u8; N]),
                move || RtrbRx(c),
            )
        }
        Sys::CbArray => {
            let q = Arc::new(crossbeam_queue::ArrayQueue::<[u8; N]>::new(d));
            let q2 = q.clone();
            work::throughput(
                Peer::Thread,
                pl,
                count,
                size,
                move || CbQueue(q, [0u8; N]),
                move || CbQueue(q2, [0u8; N]),
            )
        }
        Sys::CbChan => {
            let (tx, rx) = crossbeam_channel::bounded::<[u8; N]>(d);
            work::throughput(
                Peer::Thread,
                pl,
                count,
                size,
                move || CbChanTx(tx, [0u8; N]),
                move || CbChanRx(rx),
            )
        }
    }
}

/// Systems measured for round trips, with the modes each offers.
pub fn rt_modes(sys: Sys) -> &'static [Mode] {
    match sys {
        Sys::ShmSpsc | Sys::ShmMpmc | Sys::ShmQueue | Sys::ShmPod | Sys::IpcChannel | Sys::Shaq => {
            &[Mode::Busy, Mode::Block]
        }
        Sys::ShmConn | Sys::Pipe | Sys::Socket | Sys::CbChan => &[Mode::Block],
        Sys::Iox | Sys::Rtrb | Sys::CbArray | Sys::ShmSpscThreads | Sys::ShmMpmcThreads => {
            &[Mode::Busy]
        }
        Sys::IoxLossy => &[],
    }
}

/// Round trips of 8-byte messages through `sys` in `mode`: samples in ns.
pub fn roundtrip(sys: Sys, mode: Mode, n: u64, pl: Placement) -> Result<Vec<f64>, String> {
    const N: usize = 8;
    let warm = (n / 10).max(10);
    let proc_ = Peer::Process;
    match sys {
        Sys::ShmSpsc => {
            let (a, b) = (
                SpscRing::anonymous(1 << 16).map_err(e)?,
                SpscRing::anonymous(1 << 16).map_err(e)?,
            );
            let (a2, b2) = (a.clone(), b.clone());
            work::roundtrip(
                proc_,
                pl,
                n,
                warm,
                move || {
                    (
                        SpscTx(a.producer().expect("p"), vec![0; N], mode),
                        SpscRx(b.consumer().expect("c"), Vec::new(), mode),
                    )
                },
                move || {
                    (
                        SpscTx(b2.producer().expect("p"), vec![0; N], mode),
                        SpscRx(a2.consumer().expect("c"), Vec::new(), mode),
                    )
                },
            )
        }
        Sys::ShmMpmc => {
            let (a, b) = (
                MpmcQueue::anonymous(N, 64).map_err(e)?,
                MpmcQueue::anonymous(N, 64).map_err(e)?,
            );
            let (a2, b2) = (a.clone(), b.clone());
            work::roundtrip(
                proc_,
                pl,
                n,
                warm,
                move || {
                    (
                        MpmcTx(a.sender().expect("s"), vec![0; N], mode),
                        MpmcRx(b.receiver().expect("r"), Vec::new(), mode),
                    )
                },
                move || {
                    (
                        MpmcTx(b2.sender().expect("s"), vec![0; N], mode),
                        MpmcRx(a2.receiver().expect("r"), Vec::new(), mode),
                    )
                },
            )
        }
        Sys::ShmQueue => {
            let a = Queue::<Vec<u8>>::anonymous(N + 16, 64).map_err(e)?;
            let b = Queue::<Vec<u8>>::anonymous(N + 16, 64).map_err(e)?;
            let (a2, b2) = (a.clone(), b.clone());
            work::roundtrip(
                proc_,
                pl,
                n,
                warm,
                move || (TypedTx(a, vec![0; N], mode), TypedRx(b, mode)),
                move || (TypedTx(b2, vec![0; N], mode), TypedRx(a2, mode)),
            )
        }
        Sys::ShmPod => {
            let a = PodQueue::<[u8; N]>::anonymous(64).map_err(e)?;
            let b = PodQueue::<[u8; N]>::anonymous(64).map_err(e)?;
            let (a2, b2) = (a.clone(), b.clone());
            work::roundtrip(
                proc_,
                pl,
                n,
                warm,
                move || (PodTx(a, [0; N], mode), PodRx(b, mode)),
                move || (PodTx(b2, [0; N], mode), PodRx(a2, mode)),
            )
        }
        Sys::ShmConn => {
            let name = unique_name("shmkit-compare-rt");
            let a = shmkit::Pipe::create(&name, 1 << 16).map_err(e)?;
            // One duplex connection per side, used in both directions.
            let here = move || split_conn(a, N);
            let there = move || split_conn(shmkit::Pipe::open(&name).expect("Pipe::open"), N);
            work::roundtrip(proc_, pl, n, warm, here, there)
        }
        Sys::Pipe | Sys::Socket => {
            let ((r1, w1), (r2, w2)) = if sys == Sys::Pipe {
                (os_pipe(), os_pipe())
            } else {
                (socket_pair(), socket_pair())
            };
            work::roundtrip(
                proc_,
                pl,
                n,
                warm,
                move || {
                    (
                        StreamTx(w1.into(), vec![0; N]),
                        StreamRx(r2.into(), vec![0; N]),
                    )
                },
                move || {
                    (
                        StreamTx(w2.into(), vec![0; N]),
                        StreamRx(r1.into(), vec![0; N]),
                    )
                },
            )
        }
        Sys::IpcChannel => {
            let (t1, r1) = ipc_channel::ipc::bytes_channel().map_err(e)?;
            let (t2, r2) = ipc_channel::ipc::bytes_channel().map_err(e)?;
            work::roundtrip(
                proc_,
                pl,
                n,
                warm,
                move || (IpcTx(t1, vec![0; N]), IpcRx(r2, mode)),
                move || (IpcTx(t2, vec![0; N]), IpcRx(r1, mode)),
            )
        }
        Sys::Iox => {
            let (ab, ba) = (
                unique_name("shmkit-compare-ab"),
                unique_name("shmkit-compare-ba"),
            );
            let (ab2, ba2) = (ab.clone(), ba.clone());
            work::roundtrip(
                proc_,
                pl,
                n,
                warm,
                move || {
                    let rx = IoxRx::new(&ba, Delivery::Lossless, 64, false);
                    (IoxTx::new(&ab, N, Delivery::Lossless, 64), rx)
                },
                move || {
                    let rx = IoxRx::new(&ab2, Delivery::Lossless, 64, false);
                    (IoxTx::new(&ba2, N, Delivery::Lossless, 64), rx)
                },
            )
        }
        Sys::Shaq => {
            let mk = || -> Result<(std::fs::File, std::fs::File), String> {
                let f = memfd(1 << 16);
                // SAFETY: initialised once, here, before any peer joins.
                unsafe { shaq::spsc::Producer::<[u8; N]>::create(&f, 1 << 16) }
                    .map_err(|x| format!("{x:?}"))?;
                let g = f.try_clone().map_err(e)?;
                Ok((f, g))
            };
            let ((a, a2), (b, b2)) = (mk()?, mk()?);
            work::roundtrip(
                proc_,
                pl,
                n,
                warm,
                // SAFETY: each queue gets exactly one
                // producer (one side) and one consumer (the other side).
                move || unsafe {
                    (
                        ShaqTx(
                            shaq::spsc::Producer::<[u8; N]>::join(&a).expect("join"),
                            [0; N],
                        ),
                        ShaqRx(
                            shaq::spsc::Consumer::<[u8; N]>::join(&b).expect("join"),
                            mode,
                        ),
                    )
                },
                // SAFETY: the other side: one producer, one consumer each.
                move || unsafe {
                    (
                        ShaqTx(
                            shaq::spsc::Producer::<[u8; N]>::join(&b2).expect("join"),
                            [0; N],
                        ),
                        ShaqRx(
                            shaq::spsc::Consumer::<[u8; N]>::join(&a2).expect("join"),
                            mode,
                        ),
                    )
                },
            )
        }
        Sys::Rtrb => {
            let (p1, c1) = rtrb::RingBuffer::<[u8; N]>::new(64);
            let (p2, c2) = rtrb::RingBuffer::<[u8; N]>::new(64);
            work::roundtrip(
                Peer::Thread,
                pl,
                n,
                warm,
                move || (RtrbTx(p1, [0; N]), RtrbRx(c2)),
                move || (RtrbTx(p2, [0; N]), RtrbRx(c1)),
            )
        }
        Sys::CbArray => {
            let a = Arc::new(crossbeam_queue::ArrayQueue::<[u8; N]>::new(64));
            let b = Arc::new(crossbeam_queue::ArrayQueue::<[u8; N]>::new(64));
            let (a2, b2) = (a.clone(), b.clone());
            work::roundtrip(
                Peer::Thread,
                pl,
                n,
                warm,
                move || (CbQueue(a, [0; N]), CbQueue(b, [0; N])),
                move || (CbQueue(b2, [0; N]), CbQueue(a2, [0; N])),
            )
        }
        Sys::CbChan => {
            let (t1, r1) = crossbeam_channel::bounded::<[u8; N]>(64);
            let (t2, r2) = crossbeam_channel::bounded::<[u8; N]>(64);
            work::roundtrip(
                Peer::Thread,
                pl,
                n,
                warm,
                move || (CbChanTx(t1, [0; N]), CbChanRx(r2)),
                move || (CbChanTx(t2, [0; N]), CbChanRx(r1)),
            )
        }
        Sys::ShmSpscThreads => {
            let a = SpscRing::in_process(1 << 16).map_err(e)?;
            let b = SpscRing::in_process(1 << 16).map_err(e)?;
            let (a2, b2) = (a.clone(), b.clone());
            work::roundtrip(
                Peer::Thread,
                pl,
                n,
                warm,
                move || {
                    (
                        SpscTx(a.producer().expect("p"), vec![0; N], mode),
                        SpscRx(b.consumer().expect("c"), Vec::new(), mode),
                    )
                },
                move || {
                    (
                        SpscTx(b2.producer().expect("p"), vec![0; N], mode),
                        SpscRx(a2.consumer().expect("c"), Vec::new(), mode),
                    )
                },
            )
        }
        Sys::ShmMpmcThreads => {
            let a = MpmcQueue::in_process(N, 64).map_err(e)?;
            let b = MpmcQueue::in_process(N, 64).map_err(e)?;
            let (a2, b2) = (a.clone(), b.clone());
            work::roundtrip(
                Peer::Thread,
                pl,
                n,
                warm,
                move || {
                    (
                        MpmcTx(a.sender().expect("s"), vec![0; N], mode),
                        MpmcRx(b.receiver().expect("r"), Vec::new(), mode),
                    )
                },
                move || {
                    (
                        MpmcTx(b2.sender().expect("s"), vec![0; N], mode),
                        MpmcRx(a2.receiver().expect("r"), Vec::new(), mode),
                    )
                },
            )
        }
        Sys::IoxLossy => Err("not measured".into()),
    }
}
