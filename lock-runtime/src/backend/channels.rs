//! Release notifications, shared by every waiter of a backend.
//!
//! One entry per channel with a reference count and a `watch` of the latest release: a
//! waiter's `changed()` sees every release made after it subscribed, so no wake-up falls
//! between "subscribe" and "sleep". A release also says whom it handed the lock to, so
//! only that waiter tries again.

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
    latest: watch::Sender<Handoff>,
}

/// What a release did with the lock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Handoff {
    /// It is free: any waiter may try.
    #[default]
    Free,
    /// It went to the queued waiter with this owner token.
    To(Arc<str>),
}

impl Handoff {
    /// Whether the waiter with owner `token` should try now.
    pub(crate) fn invites(&self, token: &str) -> bool {
        match self {
            Self::Free => true,
            Self::To(to) => **to == *token,
        }
    }
}

impl Channels {
    /// Adds a waiter on `channel`; returns its receiver and whether it is the first
    /// (the caller must then subscribe on the server before relying on the watch).
    pub(crate) fn join(&self, channel: &str) -> (watch::Receiver<Handoff>, bool) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.entry(channel.to_owned()).or_insert_with(|| Entry {
            waiters: 0,
            latest: watch::Sender::new(Handoff::Free),
        });
        entry.waiters += 1;
        (entry.latest.subscribe(), entry.waiters == 1)
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

    /// Wakes every waiter on `channel` with what the release did.
    pub(crate) fn notify(&self, channel: &str, handoff: Handoff) {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get(channel) {
            entry.latest.send_replace(handoff);
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

/// Watches with nothing subscribed on a server just leave the entry.
impl Leave for Channels {
    fn leave(&self, channel: &str) {
        Channels::leave(self, channel);
    }
}

/// One waiter's subscription to a lock's releases; leaves the channel on drop.
pub(crate) struct ReleaseWatch {
    receiver: watch::Receiver<Handoff>,
    channel: String,
    owner: Arc<dyn Leave>,
    inbox: Option<Arc<str>>,
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
        receiver: watch::Receiver<Handoff>,
        channel: String,
        owner: Arc<dyn Leave>,
    ) -> Self {
        Self {
            receiver,
            channel,
            owner,
            inbox: None,
        }
    }

    /// Hand-offs to this waiter arrive on the server channel `inbox` (queue entries name it).
    pub(crate) fn with_inbox(mut self, inbox: Arc<str>) -> Self {
        self.inbox = Some(inbox);
        self
    }

    /// The channel a release hands the lock to this waiter on, when not the lock's own.
    pub(crate) fn inbox(&self) -> Option<&Arc<str>> {
        self.inbox.as_ref()
    }

    /// Completes on the next release since the last call (or since subscribing), with
    /// the latest release's hand-off. Returns `None` when notifications stopped
    /// (connection lost): do not call it again, re-subscribe.
    pub(crate) async fn released(&mut self) -> Option<Handoff> {
        self.receiver.changed().await.ok()?;
        Some(self.receiver.borrow_and_update().clone())
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
        channels.notify("c", Handoff::To("w1".into()));
        // The waiter starts waiting only now, after the release: it still sees it.
        tokio::time::timeout(std::time::Duration::from_secs(5), rx.changed())
            .await
            .expect("the release before the wait was lost")
            .unwrap();
        assert_eq!(*rx.borrow(), Handoff::To("w1".into()));
    }

    #[test]
    fn a_handoff_invites_only_its_waiter() {
        assert!(Handoff::Free.invites("anyone"));
        let handoff = Handoff::To("w1".into());
        assert!(handoff.invites("w1"));
        assert!(!handoff.invites("w2"));
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
