//! Tokio runtimes: spawning where one runs, and telling whether the runtime something was
//! started on still runs (a `Locker` outlives runtimes: several `#[tokio::test]`s share a
//! default locker, a service drops its runtime at shutdown).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

/// Spawns `future` on the current tokio runtime; outside one, drops it and returns
/// `false`.
pub(crate) fn spawn<F>(future: F) -> bool
where
    F: Future<Output = ()> + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            drop(runtime.spawn(future));
            true
        }
        Err(_) => false,
    }
}

/// One locker's background work not finished yet (releases by dropped guards, clean-ups
/// of cancelled requests, the slower Redlock servers' parts), for `Locker::flush`.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    pending: AtomicUsize,
    /// Woken when `pending` drops to zero.
    settled: Notify,
}

/// Counts one piece of background work until dropped (finished, or dropped with its
/// runtime).
struct Pending(Arc<Tracker>);

impl Drop for Pending {
    fn drop(&mut self) {
        if self.0.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.settled.notify_waiters();
        }
    }
}

impl Tracker {
    /// [`spawn`], counted until it finishes, for [`Tracker::settled`].
    pub(crate) fn spawn<F>(self: &Arc<Self>, future: F) -> bool
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.pending.fetch_add(1, Ordering::AcqRel);
        let pending = Pending(self.clone());
        spawn(async move {
            let _pending = pending;
            future.await;
        })
    }

    /// Waits until none of this tracker's work is left, at most `limit`; whether none is.
    pub(crate) async fn settled(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let settled = self.settled.notified();
                if self.pending.load(Ordering::Acquire) == 0 {
                    return;
                }
                settled.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

/// Alive while the runtime it was created on runs: a task on that runtime holds the other
/// end of a channel, and a runtime that shuts down drops its tasks.
#[derive(Debug)]
pub(crate) struct RuntimeAlive {
    sender: oneshot::Sender<()>,
}

impl RuntimeAlive {
    /// Watches the current runtime; `None` outside one.
    pub(crate) fn current() -> Option<Self> {
        let (sender, receiver) = oneshot::channel::<()>();
        // The task ends when `sender` is dropped (the watch is no longer needed) or with
        // its runtime.
        spawn(async move {
            let _ = receiver.await;
        })
        .then_some(Self { sender })
    }

    /// Whether the runtime still runs.
    pub(crate) fn is_alive(&self) -> bool {
        !self.sender.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runtime_that_shut_down_is_not_alive() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let alive = runtime.block_on(async { RuntimeAlive::current() }).unwrap();
        assert!(alive.is_alive());
        drop(runtime);
        assert!(!alive.is_alive());
        assert!(RuntimeAlive::current().is_none(), "outside a runtime");
        assert!(!spawn(async {}));
    }
}
