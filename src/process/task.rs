//! Tasks: registered functions a pool worker can run, with serde
//! arguments and results.
//!
//! A worker is a spawned process (a re-exec of this binary): it cannot
//! receive a closure, only the *name* of a function and its encoded
//! arguments. [`task!`](crate::task) declares a typed handle
//! ([`Task<A, R>`]) and registers the function under its path with
//! `inventory`, exactly as [`entry!`](crate::entry) does for process
//! entries. `A` and `R` must be `Serialize + DeserializeOwned`; a type that
//! is not fails to compile at the `task!` line.
//!
//! # Wire format (one transport message per chunk)
//!
//! Task message: `id: u64 LE`, `name_len: u16 LE`, name bytes, `count: u32
//! LE`, then `count` postcard values of `A` back to back. Result message:
//! `id: u64 LE`, `status: u8` (0 ok, 1 panicked, 2 failed), then either
//! `count` postcard values of `R` or a UTF-8 message. Both sides treat the
//! other's bytes as untrusted: every length is bounds-checked, and a bad
//! message becomes an error for that one task.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::handle::ExitStatus;

/// A typed name of a registered task function `A -> R`.
///
/// Declare one with [`task!`](crate::task); run it with a
/// [`Pool`](super::Pool) or an [`Executor`](super::Executor).
///
/// ```
/// shmkit::task! {
///     /// Squares its argument.
///     static SQUARE: Task<u64, u64> = |x| x * x;
/// }
/// assert!(SQUARE.name().ends_with("::SQUARE"));
/// assert!(shmkit::process::task_names().any(|n| n == SQUARE.name()));
/// ```
pub struct Task<A, R> {
    name: &'static str,
    _f: PhantomData<fn(A) -> R>,
}

impl<A, R> Task<A, R> {
    #[doc(hidden)]
    pub const fn __new(name: &'static str) -> Self {
        Self {
            name,
            _f: PhantomData,
        }
    }

    /// The registered name (`module::path::STATIC_NAME`).
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl<A, R> fmt::Debug for Task<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Task").field(&self.name).finish()
    }
}

/// Runs a chunk: decodes `count` arguments from the input, appends the
/// encoded results to the output. Panics propagate (the worker catches
/// them).
pub(crate) type RunFn = fn(&[u8], u32, &mut Vec<u8>) -> Result<(), String>;

/// One registered task (created by [`task!`](crate::task)).
#[doc(hidden)]
pub struct TaskRegistration {
    name: &'static str,
    run: RunFn,
}

impl TaskRegistration {
    #[doc(hidden)]
    pub const fn __new(name: &'static str, run: RunFn) -> Self {
        Self { name, run }
    }
}

inventory::collect!(TaskRegistration);

/// Names of every task registered in this binary.
///
/// ```
/// let n = shmkit::process::task_names().count();
/// assert!(n < 1_000_000);
/// ```
pub fn task_names() -> impl Iterator<Item = &'static str> {
    inventory::iter::<TaskRegistration>
        .into_iter()
        .map(|r| r.name)
}

/// Looks a task up by name (`None` for unknown or duplicated names).
pub(crate) fn lookup(name: &str) -> Option<RunFn> {
    static TABLE: OnceLock<HashMap<&'static str, Option<RunFn>>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t: HashMap<&'static str, Option<RunFn>> = HashMap::new();
        for r in inventory::iter::<TaskRegistration> {
            t.entry(r.name)
                .and_modify(|v| *v = None)
                .or_insert(Some(r.run));
        }
        t
    });
    table.get(name).copied().flatten()
}

/// A postcard output flavor appending to a borrowed `Vec<u8>`: one
/// serializer can then encode a whole chunk (postcard's own `to_extend`
/// builds a serializer per value and copies every varint with `memcpy`).
pub(crate) struct VecOut<'a>(pub &'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for VecOut<'_> {
    type Output = ();

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        // Varints and small fields are a few bytes: pushing them one by one
        // beats a call to memcpy (measured: ~40 % less encoding time).
        if data.len() <= 16 {
            for &b in data {
                self.0.push(b);
            }
        } else {
            self.0.extend_from_slice(data);
        }
        Ok(())
    }

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// A postcard serializer appending to `out`.
pub(crate) fn serializer(out: &mut Vec<u8>) -> postcard::Serializer<VecOut<'_>> {
    postcard::Serializer {
        output: VecOut(out),
    }
}

/// Appends the postcard encoding of `v` to `out`.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    v: &T,
    out: &mut Vec<u8>,
) -> Result<(), postcard::Error> {
    v.serialize(&mut serializer(out))
}

/// Decodes `count` values of `A`, applies `f`, encodes the results (used
/// by the macro; the bounds are what makes a non-serialisable task fail
/// to compile). One deserializer reads the whole chunk and one serializer
/// writes all its results.
#[doc(hidden)]
pub fn __run_task<A, R, F>(input: &[u8], count: u32, out: &mut Vec<u8>, f: F) -> Result<(), String>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
    F: Fn(A) -> R,
{
    let mut de = postcard::Deserializer::from_bytes(input);
    let mut ser = serializer(out);
    for i in 0..count {
        let arg = A::deserialize(&mut de)
            .map_err(|e| format!("argument {i} of {count} does not decode: {e}"))?;
        f(arg)
            .serialize(&mut ser)
            .map_err(|e| format!("result does not encode: {e}"))?;
    }
    let rest = de
        .finalize()
        .map_err(|e| format!("arguments do not decode: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes after the arguments", rest.len()));
    }
    Ok(())
}

/// Declares typed task functions that pool workers can run.
///
/// Each item `static NAME: Task<A, R> = function;` defines a static
/// [`Task<A, R>`](crate::process::Task) named `module::path::NAME` and
/// registers `function` (a `fn(A) -> R` item or a non-capturing closure).
/// `A` and `R` must be `Serialize + DeserializeOwned`; a task over
/// several arguments takes a tuple (that is what `starmap` feeds it).
///
/// ```
/// shmkit::task! {
///     /// `a * b`.
///     pub static MUL: Task<(i64, i64), i64> = |(a, b)| a * b;
///     static HELLO: Task<String, String> = hello;
/// }
/// fn hello(who: String) -> String {
///     format!("hello {who}")
/// }
/// assert_ne!(MUL.name(), HELLO.name());
/// ```
///
/// # No captures
///
/// A worker is another process: it receives the task's *name* and its
/// encoded argument, never a closure, so a task cannot capture variables.
/// Pass the value as (part of) the argument, e.g. `Task<(u64, u64), u64>`
/// fed by `starmap`, or set it up once per worker with
/// [`PoolBuilder::initializer`](crate::process::PoolBuilder::initializer)
/// and keep it in a static. A `move` closure is refused with a message
/// saying so:
///
/// ```compile_fail
/// fn main() {
///     let factor = 3u64;
///     shmkit::task! {
///         static SCALE: Task<u64, u64> = move |x| x * factor;
///     }
/// }
/// ```
///
/// (error: "task `SCALE` cannot capture variables: a pool worker is
/// another process and gets the task's name, not the closure; pass the
/// value as an argument (e.g. `Task<(u64, Factor), u64>` with `starmap`)
/// or set it up once per worker with `PoolBuilder::initializer` and a
/// static".) A non-`move` closure that uses a local variable cannot be
/// told apart by the macro; it fails with rustc's own "attempt to use a
/// non-constant value in a constant" (E0435), pointing at the variable
/// (ignore its hint to use `let`); the fix is the same.
#[macro_export]
macro_rules! task {
    () => {};
    ($(#[$meta:meta])* $vis:vis static $name:ident : Task<$a:ty, $r:ty> = move $f:expr; $($rest:tt)*) => {
        ::core::compile_error!(::core::concat!(
            "task `", ::core::stringify!($name), "` cannot capture variables: a pool worker is another ",
            "process and gets the task's name, not the closure; pass the value as an argument ",
            "(e.g. `Task<(u64, Factor), u64>` with `starmap`) or set it up once per worker with ",
            "`PoolBuilder::initializer` and a static"
        ));
        $crate::task! { $($rest)* }
    };
    ($(#[$meta:meta])* $vis:vis static $name:ident : Task<$a:ty, $r:ty> = $f:expr; $($rest:tt)*) => {
        $(#[$meta])*
        $vis static $name: $crate::process::Task<$a, $r> =
            $crate::process::Task::__new(::core::concat!(::core::module_path!(), "::", ::core::stringify!($name)));

        const _: () = {
            fn __shmkit_run(
                input: &[u8],
                count: u32,
                out: &mut ::std::vec::Vec<u8>,
            ) -> ::core::result::Result<(), ::std::string::String> {
                $crate::process::__run_task::<$a, $r, _>(input, count, out, $f)
            }
            $crate::process::__inventory::submit! {
                $crate::process::TaskRegistration::__new(
                    ::core::concat!(::core::module_path!(), "::", ::core::stringify!($name)),
                    __shmkit_run,
                )
            }
        };
        $crate::task! { $($rest)* }
    };
}

/// Why a task (or a submission) produced no value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// The task panicked in the worker; the worker kept serving.
    #[error("task panicked in the worker: {0}")]
    Panicked(String),
    /// The worker running the task died (e.g. SIGKILL); a replacement was
    /// started.
    #[error("worker process {pid} died while running the task ({status})")]
    WorkerDied {
        /// The dead worker's pid.
        pid: u32,
        /// How it ended.
        status: ExitStatus,
    },
    /// The worker could not run the task (unknown name, undecodable
    /// arguments, result too large for the transport).
    #[error("task failed in the worker: {0}")]
    Failed(String),
    /// The encoded arguments do not fit one transport message; raise
    /// `max_message_size` or pass smaller arguments (or a smaller chunksize).
    #[error("encoded task is {size} bytes, the transport carries at most {max}; raise max_message_size or lower chunksize")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// Transport limit.
        max: usize,
    },
    /// The arguments could not be encoded, or the result decoded.
    #[error("serialisation failed: {0}")]
    Serde(String),
    /// The pool or executor no longer accepts work (closed or shut down).
    #[error("the pool is closed")]
    Closed,
    /// The pool was terminated before the task finished.
    #[error("the pool was terminated before the task finished")]
    Terminated,
    /// The task was cancelled before it started.
    #[error("the task was cancelled before it started")]
    Cancelled,
    /// No result arrived in time (only from the `*_timeout` calls; the task
    /// may still complete later).
    #[error("timed out waiting for the result")]
    Timeout,
    /// No worker could be started.
    #[error("could not start a worker process: {0}")]
    Spawn(String),
}

pub(crate) const STATUS_OK: u8 = 0;
pub(crate) const STATUS_PANICKED: u8 = 1;
pub(crate) const STATUS_FAILED: u8 = 2;

/// Size of the task message header for `name`.
pub(crate) fn header_len(name: &str) -> usize {
    8 + 2 + name.len() + 4
}

/// Starts a task message for `name` with id 0 (patched at submit).
pub(crate) fn begin_message(name: &str, capacity: usize) -> Vec<u8> {
    let mut m = Vec::with_capacity(capacity.max(header_len(name)));
    m.extend_from_slice(&0u64.to_le_bytes());
    m.extend_from_slice(&(name.len() as u16).to_le_bytes());
    m.extend_from_slice(name.as_bytes());
    m.extend_from_slice(&0u32.to_le_bytes());
    m
}

/// Writes the item count into a message begun by [`begin_message`].
pub(crate) fn set_count(msg: &mut [u8], name: &str, count: u32) {
    let at = 8 + 2 + name.len();
    msg[at..at + 4].copy_from_slice(&count.to_le_bytes());
}

/// A parsed task message (borrowing the bytes).
pub(crate) struct TaskMessage<'a> {
    pub name: &'a str,
    pub count: u32,
    pub payload: &'a [u8],
}

/// Reads the id of a message (0 when it is too short to have one).
pub(crate) fn message_id(bytes: &[u8]) -> u64 {
    bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// Parses a task message; every length is checked against the buffer.
pub(crate) fn parse_task(bytes: &[u8]) -> Result<TaskMessage<'_>, &'static str> {
    if bytes.len() < 8 {
        return Err("task message shorter than its header");
    }
    let nlen = bytes
        .get(8..10)
        .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
        .ok_or("task message shorter than its header")?;
    let name = bytes
        .get(10..10 + nlen)
        .ok_or("task name runs past the message")?;
    let name = std::str::from_utf8(name).map_err(|_| "task name is not UTF-8")?;
    let count = bytes
        .get(10 + nlen..14 + nlen)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or("task message shorter than its header")?;
    Ok(TaskMessage {
        name,
        count,
        payload: &bytes[14 + nlen..],
    })
}

/// Parses a result message into `(id, outcome)`; `None` without an id.
pub(crate) fn parse_result(bytes: &[u8]) -> Option<(u64, Result<Vec<u8>, TaskError>)> {
    let id = message_id(bytes);
    if id == 0 {
        return None;
    }
    let status = *bytes.get(8)?;
    let body = &bytes[9..];
    let text = || String::from_utf8_lossy(body).into_owned();
    let outcome = match status {
        STATUS_OK => Ok(body.to_vec()),
        STATUS_PANICKED => Err(TaskError::Panicked(text())),
        STATUS_FAILED => Err(TaskError::Failed(text())),
        _ => Err(TaskError::Failed(format!(
            "result message has unknown status {status}"
        ))),
    };
    Some((id, outcome))
}

/// Decodes exactly `count` results of `R` from a result payload.
pub(crate) fn decode_results<R: DeserializeOwned>(
    bytes: &[u8],
    count: usize,
) -> Result<Vec<R>, TaskError> {
    let mut out = Vec::with_capacity(count.min(bytes.len()));
    decode_results_into(bytes, count, &mut out)?;
    Ok(out)
}

/// Decodes exactly `count` results of `R` from a result payload, appending
/// them to `out` (on error `out` may hold some of them).
pub(crate) fn decode_results_into<R: DeserializeOwned>(
    bytes: &[u8],
    count: usize,
    out: &mut Vec<R>,
) -> Result<(), TaskError> {
    // Every encoded value takes at least one byte unless it is zero-sized;
    // do not let a forged count reserve more than the payload can hold.
    out.reserve(count.min(bytes.len()));
    let mut de = postcard::Deserializer::from_bytes(bytes);
    for _ in 0..count {
        out.push(R::deserialize(&mut de).map_err(|e| TaskError::Serde(e.to_string()))?);
    }
    let rest = de.finalize().map_err(|e| TaskError::Serde(e.to_string()))?;
    if !rest.is_empty() {
        return Err(TaskError::Serde(format!(
            "{} trailing bytes after {count} results",
            rest.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::task! {
        static DOUBLE: Task<u32, u64> = |x| u64::from(x) * 2;
    }

    #[test]
    fn message_round_trip() {
        let name = DOUBLE.name();
        let mut m = begin_message(name, 0);
        for x in [1u32, 300, 70000] {
            m = postcard::to_extend(&x, m).unwrap();
        }
        set_count(&mut m, name, 3);
        m[..8].copy_from_slice(&9u64.to_le_bytes());
        let t = parse_task(&m).unwrap();
        assert_eq!((message_id(&m), t.name, t.count), (9, name, 3));
        let run = lookup(t.name).unwrap();
        let mut out = Vec::new();
        run(t.payload, t.count, &mut out).unwrap();
        let r: Vec<u64> = decode_results(&out, 3).unwrap();
        assert_eq!(r, vec![2, 600, 140000]);
    }

    #[test]
    fn truncated_messages_are_errors_not_panics() {
        let name = DOUBLE.name();
        let mut m = begin_message(name, 0);
        m = postcard::to_extend(&5u32, m).unwrap();
        set_count(&mut m, name, 1);
        for cut in 0..m.len() {
            if let Ok(t) = parse_task(&m[..cut]) {
                let mut out = Vec::new();
                assert!(lookup(t.name).unwrap()(t.payload, t.count, &mut out).is_err());
            }
        }
        assert!(parse_result(&[1, 0, 0]).is_none());
        assert!(decode_results::<u64>(&[0xff], 1).is_err());
        assert!(lookup("no::such::TASK").is_none());
    }
}
