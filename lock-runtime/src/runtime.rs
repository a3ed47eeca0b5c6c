//! Tokio runtimes: spawning where one runs, and telling whether the runtime something was
//! started on still runs (a `Locker` outlives runtimes: several `#[tokio::test]`s share a
//! default locker, a service drops its runtime at shutdown).

use std::future::Future;

use tokio::sync::oneshot;

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
