//! Waiting, on the sending side, until receivers have taken everything:
//! the producer half of a rendezvous ("do not exit before the consumer
//! has what I sent").

use std::time::{Duration, Instant};

/// Why [`MpmcQueue::wait_drained`](crate::queue::MpmcQueue::wait_drained)
/// (and its counterparts) returned before the queue was empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DrainError {
    /// Messages were still queued when the timeout expired.
    #[error("messages still queued when the timeout expired")]
    Timeout,
    /// Messages are still queued but no receiver can take them any more:
    /// every receiving process closed its side or died (the registry's
    /// disconnection rule).
    #[error("messages still queued and every receiver is gone")]
    Disconnected,
}

/// First and last sleep between two looks at the queue.
const FIRST_NAP: Duration = Duration::from_micros(50);
const LAST_NAP: Duration = Duration::from_millis(5);
/// How often the (syscall-costing) disconnection rule is evaluated.
const LIVENESS_EVERY: Duration = Duration::from_millis(10);

/// Polls `is_empty` with a growing sleep (50 µs to 5 ms) until it holds,
/// `timeout` passes, or `disconnected` says nobody will ever drain.
///
/// It deliberately does not register on the queue's notifiers: a wake-up
/// meant for a blocked sender must never be taken by a drain waiter, and
/// nothing is added to the send or receive path. The price is latency
/// (up to one 5 ms nap after the last receive), which a producer about to
/// exit does not notice.
pub(crate) fn wait_drained(
    timeout: Option<Duration>,
    is_empty: impl Fn() -> bool,
    disconnected: impl Fn() -> bool,
) -> Result<(), DrainError> {
    let start = Instant::now();
    let mut nap = FIRST_NAP;
    let mut checked = start;
    loop {
        if is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        if now.duration_since(checked) >= LIVENESS_EVERY || checked == start {
            checked = now;
            if disconnected() {
                // A receive may have finished between the two looks.
                return if is_empty() {
                    Ok(())
                } else {
                    Err(DrainError::Disconnected)
                };
            }
        }
        let mut sleep = nap;
        if let Some(t) = timeout {
            let left = t.saturating_sub(now.duration_since(start));
            if left.is_zero() {
                return Err(DrainError::Timeout);
            }
            sleep = sleep.min(left);
        }
        std::thread::sleep(sleep);
        nap = (nap * 2).min(LAST_NAP);
    }
}
