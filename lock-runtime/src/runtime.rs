//! Tokio runtimes: spawning where one runs, and telling whether the runtime something was
//! started on still runs (a `Locker` outlives runtimes: several `#[tokio::test]`s share a
//! default locker, a service drops its runtime at shutdown).

use std::future::Future;
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

/// Background work not finished yet (releases by dropped guards, clean-ups of cancelled
/// requests), in the whole process.
static PENDING: AtomicUsize = AtomicUsize::new(0);

/// Woken when `PENDING` drops to zero.
static SETTLED: Notify = Notify::const_new();

/// Counts one piece of background work until dropped (finished, or dropped with its
/// runtime).
struct Pending;

impl Drop for Pending {
    fn drop(&mut self) {
        if PENDING.fetch_sub(1, Ordering::AcqRel) == 1 {
            SETTLED.notify_waiters();
        }
    }
}

/// [`spawn`], counted until it finishes, for [`settled`].
pub(crate) fn spawn_tracked<F>(future: F) -> bool
where
    F: Future<Output = ()> + Send + 'static,
{
    PENDING.fetch_add(1, Ordering::AcqRel);
    let pending = Pending;
    spawn(async move {
        let _pending = pending;
        future.await;
    })
}

/// Waits until no tracked background work is left, at most `limit`; whether none is.
pub(crate) async fn settled(limit: Duration) -> bool {
    let wait = async {
        loop {
            let settled = SETTLED.notified();
            if PENDING.load(Ordering::Acquire) == 0 {
                return;
            }
            settled.await;
        }
    };
    tokio::time::timeout(limit, wait).await.is_ok()
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
