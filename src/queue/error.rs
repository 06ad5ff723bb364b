//! Per-operation queue errors, crossbeam-style: a failed send gives the
//! value back, so the caller never loses data to an error.

use std::fmt;

/// `try_send`/`try_push` failed; the value is returned.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum TrySendError<T> {
    /// The queue is full right now.
    Full(T),
    /// Every receiver has closed or died; nothing sent will be read.
    Disconnected(T),
    /// The message can never fit (larger than the ring or a slot).
    TooLarge(T),
}

/// A blocking send failed; the value is returned.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum SendError<T> {
    /// Every receiver has closed or died.
    Disconnected(T),
    /// The message can never fit.
    TooLarge(T),
}

/// A send with a timeout failed; the value is returned.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum SendTimeoutError<T> {
    /// Still full when the timeout expired.
    Timeout(T),
    /// Every receiver has closed or died.
    Disconnected(T),
    /// The message can never fit.
    TooLarge(T),
}

/// `try_recv`/`try_pop` found nothing to return.
#[derive(PartialEq, Eq, Clone, Copy, Debug, thiserror::Error)]
pub enum TryRecvError {
    /// Nothing queued right now.
    #[error("queue is empty")]
    Empty,
    /// Empty, and every sender has closed or died: nothing more will come.
    #[error("queue is empty and every sender has closed or died")]
    Disconnected,
    /// The shared state holds an impossible value (a frame length or index
    /// out of range); the queue cannot be read safely.
    #[error("queue is corrupt: {0}")]
    Corrupt(&'static str),
}

/// A blocking receive failed.
#[derive(PartialEq, Eq, Clone, Copy, Debug, thiserror::Error)]
pub enum RecvError {
    /// Empty, and every sender has closed or died.
    #[error("queue is empty and every sender has closed or died")]
    Disconnected,
    /// The shared state is corrupt.
    #[error("queue is corrupt: {0}")]
    Corrupt(&'static str),
}

/// A receive with a timeout failed.
#[derive(PartialEq, Eq, Clone, Copy, Debug, thiserror::Error)]
pub enum RecvTimeoutError {
    /// Nothing arrived before the timeout.
    #[error("timed out waiting on an empty queue")]
    Timeout,
    /// Empty, and every sender has closed or died.
    #[error("queue is empty and every sender has closed or died")]
    Disconnected,
    /// The shared state is corrupt.
    #[error("queue is corrupt: {0}")]
    Corrupt(&'static str),
}

macro_rules! value_error {
    ($name:ident { $($variant:ident => $msg:expr),* $(,)? }) => {
        impl<T> $name<T> {
            /// The value that was not sent.
            pub fn into_inner(self) -> T {
                match self { $($name::$variant(v) => v),* }
            }
        }
        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self { $($name::$variant(_) => write!(f, concat!(stringify!($name), "::", stringify!($variant), "(..)"))),* }
            }
        }
        impl<T> fmt::Display for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self { $($name::$variant(_) => f.write_str($msg)),* }
            }
        }
        impl<T> std::error::Error for $name<T> {}
    };
}

value_error!(TrySendError {
    Full => "queue is full",
    Disconnected => "every receiver has closed or died",
    TooLarge => "message larger than the queue can ever hold",
});
value_error!(SendError {
    Disconnected => "every receiver has closed or died",
    TooLarge => "message larger than the queue can ever hold",
});
value_error!(SendTimeoutError {
    Timeout => "timed out waiting on a full queue",
    Disconnected => "every receiver has closed or died",
    TooLarge => "message larger than the queue can ever hold",
});

impl From<RecvError> for RecvTimeoutError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Disconnected => RecvTimeoutError::Disconnected,
            RecvError::Corrupt(c) => RecvTimeoutError::Corrupt(c),
        }
    }
}

impl From<RecvError> for TryRecvError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Disconnected => TryRecvError::Disconnected,
            RecvError::Corrupt(c) => TryRecvError::Corrupt(c),
        }
    }
}
