//! Who is waiting, and what they hear: the registry that turns a server's notifications
//! into wake-ups of this process's waiters.
//!
//! A waiter registers its owner token (and, where frees are announced per lock, the
//! lock's channel) before its first queued attempt, so nothing announced after that
//! attempt can be missed. Three things reach it:
//! - a [`Handoff`](crate::queue::Handoff) addressed to its token: a release gave it the lock;
//! - a free on its lock's channel (Redlock): any waiter may try now;
//! - an interruption: the notifications stopped (connection lost), so it should try now
//!   and not rely on being told.
//!
//! Registrations are removed when dropped; a channel whose last waiter left is given to a
//! hook (the Redis driver unsubscribes it), so nothing here outlives its waiters.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc;

use crate::queue::Handoff;

/// What a waiter hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// A release handed the lock to this waiter.
    Handoff(Handoff),
    /// A release freed the lock: try now.
    Free,
    /// Notifications stopped (and may have been missed): try now.
    Interrupted,
    /// A leader's announcement on its election's channel (leader watches).
    Announced(Announcement),
}

/// What a leader announces on its election's channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Announcement {
    /// Elected with this epoch.
    Elected(u64),
    /// The leader of this epoch resigned.
    Resigned(u64),
}

impl Announcement {
    /// `elected <epoch>` or `resigned <epoch>`.
    pub(crate) fn payload(self) -> String {
        match self {
            Self::Elected(epoch) => format!("elected {epoch}"),
            Self::Resigned(epoch) => format!("resigned {epoch}"),
        }
    }

    /// Parses [`payload`](Self::payload)'s form strictly.
    pub(crate) fn parse(payload: &[u8]) -> Option<Self> {
        let payload = std::str::from_utf8(payload).ok()?;
        let (what, epoch) = payload.split_once(' ')?;
        let epoch = epoch.parse().ok()?;
        match what {
            "elected" => Some(Self::Elected(epoch)),
            "resigned" => Some(Self::Resigned(epoch)),
            _ => None,
        }
    }
}

/// Called with a channel when its last waiter leaves.
pub(crate) type OnLastLeave = Arc<dyn Fn(&str) + Send + Sync>;

/// The waiters of one backend (one server connection, or the memory backend).
#[derive(Default)]
pub(crate) struct Notifications {
    state: Mutex<State>,
}

impl fmt::Debug for Notifications {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("Notifications")
            .field("waiters", &state.waiters.len())
            .field("channels", &state.channels.len())
            .finish()
    }
}

#[derive(Default)]
struct State {
    waiters: HashMap<Arc<str>, Waiter>,
    channels: HashMap<String, HashSet<Arc<str>>>,
}

struct Waiter {
    events: mpsc::UnboundedSender<Event>,
    channel: Option<String>,
}

/// One waiter's place in the registry; leaves it when dropped.
pub(crate) struct Registration {
    notifications: Arc<Notifications>,
    token: Arc<str>,
    events: mpsc::UnboundedReceiver<Event>,
    on_last_leave: Option<OnLastLeave>,
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl Notifications {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers the waiter with owner `token`, listening for frees on `channel` too.
    pub(crate) fn register(
        self: &Arc<Self>,
        token: &str,
        channel: Option<&str>,
        on_last_leave: Option<OnLastLeave>,
    ) -> Registration {
        let token: Arc<str> = token.into();
        let (sender, events) = mpsc::unbounded_channel();
        let mut state = self.state();
        if let Some(channel) = channel {
            let tokens = state.channels.entry(channel.to_owned()).or_default();
            tokens.insert(token.clone());
        }
        state.waiters.insert(
            token.clone(),
            Waiter {
                events: sender,
                channel: channel.map(str::to_owned),
            },
        );
        Registration {
            notifications: self.clone(),
            token,
            events,
            on_last_leave,
        }
    }

    /// Delivers a hand-off to the waiter it names, if it is still registered.
    pub(crate) fn handoff(&self, handoff: Handoff) {
        if let Some(waiter) = self.state().waiters.get(handoff.token.as_ref()) {
            let _ = waiter.events.send(Event::Handoff(handoff));
        }
    }

    /// Tells every waiter on `channel` that the lock is free.
    pub(crate) fn free(&self, channel: &str) {
        let state = self.state();
        for token in state.channels.get(channel).into_iter().flatten() {
            if let Some(waiter) = state.waiters.get(token) {
                let _ = waiter.events.send(Event::Free);
            }
        }
    }

    /// Tells every listener on `channel` what its leader announced.
    pub(crate) fn announce(&self, channel: &str, announcement: Announcement) {
        let state = self.state();
        for token in state.channels.get(channel).into_iter().flatten() {
            if let Some(waiter) = state.waiters.get(token) {
                let _ = waiter.events.send(Event::Announced(announcement));
            }
        }
    }

    /// Tells every waiter that notifications stopped.
    pub(crate) fn interrupt_all(&self) {
        for waiter in self.state().waiters.values() {
            let _ = waiter.events.send(Event::Interrupted);
        }
    }

    /// Tells every waiter on `channel` that its notifications stopped (the channel's
    /// subscription was dropped).
    pub(crate) fn interrupt_channel(&self, channel: &str) {
        let state = self.state();
        for token in state.channels.get(channel).into_iter().flatten() {
            if let Some(waiter) = state.waiters.get(token) {
                let _ = waiter.events.send(Event::Interrupted);
            }
        }
    }

    /// The channels someone listens on.
    pub(crate) fn channels(&self) -> Vec<String> {
        self.state().channels.keys().cloned().collect()
    }

    /// How many waiters listen on `channel`.
    pub(crate) fn listeners(&self, channel: &str) -> usize {
        self.state().channels.get(channel).map_or(0, HashSet::len)
    }

    /// How many waiters are registered.
    pub(crate) fn len(&self) -> usize {
        self.state().waiters.len()
    }

    /// Removes `token`; returns its channel when it was the channel's last waiter.
    fn leave(&self, token: &Arc<str>) -> Option<String> {
        let mut state = self.state();
        let channel = state.waiters.remove(token)?.channel?;
        let tokens = state.channels.get_mut(&channel)?;
        tokens.remove(token);
        if tokens.is_empty() {
            state.channels.remove(&channel);
            return Some(channel);
        }
        None
    }
}

impl Registration {
    /// The next event; never completes if the registry is gone (it lives as long as
    /// this registration).
    pub(crate) async fn next(&mut self) -> Event {
        match self.events.recv().await {
            Some(event) => event,
            None => std::future::pending().await,
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(channel) = self.notifications.leave(&self.token)
            && let Some(on_last_leave) = &self.on_last_leave
        {
            on_last_leave(&channel);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn handoff(token: &str) -> Handoff {
        Handoff {
            token: token.into(),
            fence: 0,
            at_us: 1,
        }
    }

    #[tokio::test]
    async fn a_handoff_reaches_only_its_waiter() {
        let notifications = Arc::new(Notifications::default());
        let mut a = notifications.register("a", None, None);
        let mut b = notifications.register("b", None, None);
        // Sent before anyone waits: still heard.
        notifications.handoff(handoff("b"));
        assert_eq!(b.next().await, Event::Handoff(handoff("b")));
        notifications.free("nobody-listens");
        notifications.interrupt_all();
        assert_eq!(a.next().await, Event::Interrupted);
        assert_eq!(b.next().await, Event::Interrupted);
    }

    #[tokio::test]
    async fn frees_reach_every_waiter_of_the_channel() {
        let notifications = Arc::new(Notifications::default());
        let mut a = notifications.register("a", Some("c"), None);
        let mut b = notifications.register("b", Some("c"), None);
        let mut other = notifications.register("o", Some("d"), None);
        notifications.free("c");
        assert_eq!(a.next().await, Event::Free);
        assert_eq!(b.next().await, Event::Free);
        notifications.interrupt_all();
        assert_eq!(other.next().await, Event::Interrupted);
    }

    #[tokio::test]
    async fn announcements_reach_the_channel_and_parse_strictly() {
        let notifications = Arc::new(Notifications::default());
        let mut watcher = notifications.register("w", Some("lock:{s}:leader"), None);
        notifications.announce("lock:{s}:leader", Announcement::Elected(9));
        assert_eq!(
            watcher.next().await,
            Event::Announced(Announcement::Elected(9))
        );
        for announcement in [Announcement::Elected(1), Announcement::Resigned(u64::MAX)] {
            let payload = announcement.payload();
            assert_eq!(Announcement::parse(payload.as_bytes()), Some(announcement));
        }
        for bad in [
            &b"elected"[..],
            b"elected x",
            b"elected 1 2",
            b"won 1",
            b"",
            b"w 1 2",
        ] {
            assert_eq!(Announcement::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_last_waiter_leaving_releases_the_channel_and_the_registry_empties() {
        let notifications = Arc::new(Notifications::default());
        let released = Arc::new(AtomicUsize::new(0));
        let hook: OnLastLeave = {
            let released = released.clone();
            Arc::new(move |channel| {
                assert_eq!(channel, "c");
                released.fetch_add(1, Ordering::SeqCst);
            })
        };
        let a = notifications.register("a", Some("c"), Some(hook.clone()));
        let b = notifications.register("b", Some("c"), Some(hook));
        drop(a);
        assert_eq!(released.load(Ordering::SeqCst), 0);
        drop(b);
        assert_eq!(released.load(Ordering::SeqCst), 1);
        assert_eq!(notifications.len(), 0);
    }
}
