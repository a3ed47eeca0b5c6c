//! The memory backend's model of a lock's queue: the same rules as `queue.lua` (arrival
//! order kept across refreshes, leaving in `O(log n)`, at most [`SCAN`] entries looked
//! at per release or attempt, dead entries dropped), on `tokio::time::Instant`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// Entries a release or an attempt looks at, at most (`SCAN` in `queue.lua`).
pub(crate) const SCAN: usize = 16;

/// One waiter's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    arrival: u64,
    /// Dead (its waiter is gone) from this instant on.
    pub(crate) alive_until: Instant,
    /// How long a lock handed to it waits to be claimed.
    pub(crate) claim_within: Duration,
    /// Whether it asked for a fencing token.
    pub(crate) fencing: bool,
    /// A semaphore waiter's count of permits (0 for a lock's waiter).
    pub(crate) permits: u32,
}

/// The waiters of one lock.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    next_arrival: u64,
    order: BTreeMap<u64, Arc<str>>,
    entries: HashMap<Arc<str>, Entry>,
}

impl Queue {
    /// Adds `token` at the end, or refreshes its entry keeping its place.
    pub(crate) fn join(
        &mut self,
        token: &str,
        alive_until: Instant,
        claim_within: Duration,
        (fencing, permits): (bool, u32),
    ) {
        if let Some(entry) = self.entries.get_mut(token) {
            entry.alive_until = alive_until;
            entry.claim_within = claim_within;
            entry.fencing = fencing;
            entry.permits = permits;
            return;
        }
        let token: Arc<str> = token.into();
        let arrival = self.next_arrival;
        self.next_arrival += 1;
        self.order.insert(arrival, token.clone());
        self.entries.insert(
            token,
            Entry {
                arrival,
                alive_until,
                claim_within,
                fencing,
                permits,
            },
        );
    }

    /// Takes `token` out of the queue.
    pub(crate) fn leave(&mut self, token: &str) {
        if let Some(entry) = self.entries.remove(token) {
            self.order.remove(&entry.arrival);
        }
    }

    /// The first live waiter, left in the queue (the dead ones before it are removed),
    /// looking at no more than [`SCAN`] entries.
    pub(crate) fn first_waiter(&mut self, now: Instant) -> Option<(Arc<str>, Entry)> {
        self.prune(now);
        let (_, token) = self.order.first_key_value()?;
        let entry = *self.entries.get(token)?;
        (entry.alive_until > now).then(|| (token.clone(), entry))
    }

    /// A semaphore's: the first live waiter within [`SCAN`] entries that `admits`, left in
    /// the queue (the dead ones met are removed); `first_admitted` in `queue.lua`.
    pub(crate) fn first_admitted(
        &mut self,
        now: Instant,
        admits: impl Fn(&Entry) -> bool,
    ) -> Option<(Arc<str>, Entry)> {
        self.prune(now);
        let mut dead = Vec::new();
        let mut found = None;
        for token in self.order.values().take(SCAN) {
            let Some(entry) = self.entries.get(token) else {
                continue;
            };
            if entry.alive_until <= now {
                dead.push(token.clone());
            } else if admits(entry) {
                found = Some((token.clone(), *entry));
                break;
            }
        }
        for token in dead {
            self.leave(&token);
        }
        found
    }

    /// Takes the first live waiter out of the queue (see [`first_waiter`](Self::first_waiter)).
    #[cfg(test)]
    pub(crate) fn next_waiter(&mut self, now: Instant) -> Option<(Arc<str>, Entry)> {
        let (token, entry) = self.first_waiter(now)?;
        self.leave(&token);
        Some((token, entry))
    }

    /// Removes dead entries from the head (at most [`SCAN`]).
    pub(crate) fn prune(&mut self, now: Instant) {
        for _ in 0..SCAN {
            let Some((_, token)) = self.order.first_key_value() else {
                return;
            };
            if self
                .entries
                .get(token)
                .is_some_and(|entry| entry.alive_until > now)
            {
                return;
            }
            let token = token.clone();
            self.leave(&token);
        }
    }

    /// Whether no waiter is alive: the queue can be dropped (on Redis, its keys expire).
    pub(crate) fn is_dead(&self, now: Instant) -> bool {
        self.entries.values().all(|entry| entry.alive_until <= now)
    }

    /// How many entries it holds, live or dead.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue_of(now: Instant, alive: &[(&str, u64)]) -> Queue {
        let mut queue = Queue::default();
        for (token, alive_ms) in alive {
            queue.join(
                token,
                now + Duration::from_millis(*alive_ms),
                Duration::from_secs(2),
                (false, 0),
            );
        }
        queue
    }

    #[test]
    fn first_come_first_served_and_refreshing_keeps_the_place() {
        let now = Instant::now();
        let mut queue = queue_of(now, &[("a", 100), ("b", 100), ("c", 100)]);
        queue.join(
            "a",
            now + Duration::from_secs(5),
            Duration::from_secs(1),
            (true, 0),
        );
        let (first, entry) = queue.next_waiter(now).unwrap();
        assert_eq!(&*first, "a");
        assert!(entry.fencing);
        queue.leave("b");
        assert_eq!(&*queue.next_waiter(now).unwrap().0, "c");
        assert!(queue.next_waiter(now).is_none());
    }

    #[test]
    fn dead_entries_are_skipped_within_the_scan_bound() {
        let now = Instant::now();
        let later = now + Duration::from_millis(50);
        let mut queue = queue_of(now, &[("dead1", 10), ("dead2", 10), ("live", 100)]);
        assert_eq!(&*queue.next_waiter(later).unwrap().0, "live");
        assert_eq!(queue.len(), 0);

        // More dead entries than one scan: a release finds nobody (and frees the lock),
        // yet removed SCAN of them; pruning removes more.
        let many: Vec<(String, u64)> = (0..SCAN * 3).map(|i| (format!("d{i}"), 10)).collect();
        let many: Vec<(&str, u64)> = many.iter().map(|(t, a)| (t.as_str(), *a)).collect();
        let mut queue = queue_of(now, &many);
        queue.join(
            "live",
            now + Duration::from_secs(1),
            Duration::from_secs(2),
            (false, 0),
        );
        assert!(queue.next_waiter(later).is_none());
        assert_eq!(queue.len(), SCAN * 2 + 1);
        queue.prune(later);
        assert_eq!(queue.len(), SCAN + 1);
        queue.prune(later);
        assert_eq!(queue.len(), 1);
        queue.prune(later); // the live head stops pruning
        assert_eq!(queue.len(), 1);
        assert!(!queue.is_dead(later));
        assert!(queue.is_dead(now + Duration::from_secs(2)));
    }
}
