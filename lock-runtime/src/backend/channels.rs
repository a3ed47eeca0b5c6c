//! Release notifications, shared by every waiter of a backend.
//!
//! One entry per channel with a reference count and a `watch` generation counter: a
//! release bumps the counter, and a waiter's `changed()` sees every bump made after it
//! subscribed, so no wake-up falls between "subscribe" and "sleep".

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

/// The channels some waiter is watching, each with its waiter count.
#[derive(Debug, Default)]
pub(crate) struct Channels {
    entries: Mutex<HashMap<String, Entry>>,
    closed: AtomicBool,
}

#[derive(Debug)]
struct Entry {
    waiters: usize,
    generation: watch::Sender<u64>,
}

impl Channels {
    /// Adds a waiter on `channel`; returns its receiver and whether it is the first
    /// (the caller must then subscribe on the server before relying on the watch).
    pub(crate) fn join(&self, channel: &str) -> (watch::Receiver<u64>, bool) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.entry(channel.to_owned()).or_insert_with(|| Entry {
            waiters: 0,
            generation: watch::Sender::new(0),
        });
        entry.waiters += 1;
        (entry.generation.subscribe(), entry.waiters == 1)
    }

    /// Removes a waiter; returns `true` when it was the last one on `channel` (the caller
    /// may then unsubscribe on the server).
    pub(crate) fn leave(&self, channel: &str) -> bool {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = entries.get_mut(channel) else {
            return false;
        };
        entry.waiters -= 1;
        if entry.waiters == 0 {
            entries.remove(channel);
            return true;
        }
        false
    }

    /// Wakes every waiter on `channel`.
    pub(crate) fn notify(&self, channel: &str) {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get(channel) {
            entry.generation.send_modify(|generation| *generation += 1);
        }
    }

    /// Drops every entry: each waiter's next `released()` returns `false` and it falls
    /// back to timers (used when the pub/sub connection is lost).
    pub(crate) fn close_all(&self) {
        self.closed.store(true, Ordering::Release);
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Whether [`close_all`](Self::close_all) was called: the notifications behind these
    /// channels stopped.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Whether some waiter watches `channel`.
    pub(crate) fn contains(&self, channel: &str) -> bool {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(channel)
    }

    /// How many channels have waiters (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Called when a [`ReleaseWatch`] is dropped, to leave its channel.
pub(crate) trait Leave: Send + Sync {
    fn leave(&self, channel: &str);
}

/// One waiter's subscription to a lock's releases; leaves the channel on drop.
pub(crate) struct ReleaseWatch {
    receiver: watch::Receiver<u64>,
    channel: String,
    owner: Arc<dyn Leave>,
}

impl std::fmt::Debug for ReleaseWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReleaseWatch")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl ReleaseWatch {
    pub(crate) fn new(
        receiver: watch::Receiver<u64>,
        channel: String,
        owner: Arc<dyn Leave>,
    ) -> Self {
        Self {
            receiver,
            channel,
            owner,
        }
    }

    /// Completes on the next release since the last call (or since subscribing). Returns
    /// `false` when notifications stopped (connection lost): do not call it again, re-subscribe.
    pub(crate) async fn released(&mut self) -> bool {
        self.receiver.changed().await.is_ok()
    }
}

impl Drop for ReleaseWatch {
    fn drop(&mut self) {
        self.owner.leave(&self.channel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_release_between_join_and_wait_is_not_lost() {
        let channels = Channels::default();
        let (mut rx, first) = channels.join("c");
        assert!(first);
        channels.notify("c");
        // The waiter starts waiting only now, after the release: it still sees it.
        tokio::time::timeout(std::time::Duration::from_secs(5), rx.changed())
            .await
            .expect("the release before the wait was lost")
            .unwrap();
    }

    #[test]
    fn last_waiter_leaving_removes_the_channel() {
        let channels = Channels::default();
        let (_a, first_a) = channels.join("c");
        let (_b, first_b) = channels.join("c");
        assert!(first_a && !first_b);
        assert!(!channels.leave("c"));
        assert!(channels.leave("c"));
        assert_eq!(channels.len(), 0);
    }

    #[tokio::test]
    async fn close_all_ends_every_watch() {
        let channels = Channels::default();
        let (mut rx, _) = channels.join("c");
        channels.close_all();
        assert!(rx.changed().await.is_err());
    }
}
