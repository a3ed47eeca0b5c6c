//! The in-process backend: the same semantics as Redis (TTL expiry, owner tokens,
//! fencing, the queue of waiters and hand-off on release, semaphores) for tests and
//! single-process programs. A lock is kept as a semaphore of one permit: a key's leases,
//! each an owner token and its end.
//!
//! Time is `tokio::time::Instant`, so tests under a paused tokio clock can expire locks
//! by advancing time. Nothing is kept for an idle lock: expired keys and dead queues are
//! swept (amortized over operations), and fencing tokens come from one counter per
//! backend, so no per-lock counter has to live forever.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::{Attempt, ExtendMode, Listener, ReleaseReport, Remaining, Renewal, Request};
use crate::LockError;
use crate::key::LockKeys;
use crate::notify::Notifications;
use crate::queue::memory::Queue;
use crate::queue::{Handoff, Inbox, QueueSpec};
use crate::runtime::Tracker;

/// Locks in this process's memory.
#[derive(Debug, Default)]
pub(crate) struct MemoryBackend {
    state: Mutex<State>,
    notifications: Arc<Notifications>,
    /// This locker's background work, for `Locker::flush`.
    pub(super) tracker: Arc<Tracker>,
}

#[derive(Debug, Default)]
struct State {
    /// Each key's live (or not yet swept) leases.
    held: HashMap<String, Leases>,
    queues: HashMap<String, Queue>,
    /// The last fencing token issued (all locks share the counter).
    last_fence: u64,
    /// Stands in for the server's clock in hand-off messages: one tick per operation.
    ticks: u64,
    /// Operations since the last sweep.
    since_sweep: usize,
}

/// The leases of one key: one for a lock, up to the permits for a semaphore.
#[derive(Debug, Default)]
struct Leases(Vec<Lease>);

#[derive(Debug)]
struct Lease {
    token: String,
    expires_at: Instant,
}

impl Leases {
    fn of(&mut self, token: &str) -> Option<&mut Lease> {
        self.0.iter_mut().find(|lease| lease.token == token)
    }

    /// Ends leases that ran out; whether any is left.
    fn prune(&mut self, now: Instant) -> bool {
        self.0.retain(|lease| lease.expires_at > now);
        !self.0.is_empty()
    }

    /// When the first lease ends.
    fn first_end(&self) -> Option<Instant> {
        self.0.iter().map(|lease| lease.expires_at).min()
    }

    /// Gives `token` a lease until `until` (replacing its own).
    fn grant(&mut self, token: &str, until: Instant) {
        match self.of(token) {
            Some(lease) => lease.expires_at = until,
            None => self.0.push(Lease {
                token: token.to_owned(),
                expires_at: until,
            }),
        }
    }
}

/// `now + duration`, saturating far in the future (durations are bounded on entry).
fn after(now: Instant, duration: Duration) -> Instant {
    now.checked_add(duration)
        .unwrap_or_else(|| now + crate::millis::MAX)
}

impl State {
    /// Counts an operation, sweeping expired keys and dead queues every so often (the
    /// cost is amortized: a sweep follows at least as many operations as entries).
    fn tick(&mut self, now: Instant) -> u64 {
        self.ticks += 1;
        self.since_sweep += 1;
        if self.since_sweep > 64.max(self.held.len() + self.queues.len()) {
            self.held.retain(|_, leases| leases.prune(now));
            self.queues.retain(|_, queue| !queue.is_dead(now));
            self.since_sweep = 0;
        }
        self.ticks
    }

    /// The live leases of `key`, dropping ended ones first (and the key with the last).
    fn live(&mut self, key: &str, now: Instant) -> Option<&mut Leases> {
        if self
            .held
            .get_mut(key)
            .is_some_and(|leases| !leases.prune(now))
        {
            self.held.remove(key);
        }
        self.held.get_mut(key)
    }

    fn owned(&mut self, key: &str, token: &str, now: Instant) -> Option<&mut Lease> {
        self.live(key, now).and_then(|leases| leases.of(token))
    }

    fn next_fence(&mut self) -> u64 {
        self.last_fence += 1;
        self.last_fence
    }

    fn leave_queue(&mut self, key: &str, token: &str) {
        if let Some(queue) = self.queues.get_mut(key) {
            queue.leave(token);
        }
    }

    /// Busy when every permit (a lock's one) is held by another owner, with the time
    /// until the first lease ends; `None` when `token` may take one.
    fn busy(&mut self, keys: &LockKeys, token: &str, now: Instant) -> Option<Duration> {
        let permits = keys.permits().unwrap_or(1);
        let leases = self.live(keys.key(), now)?;
        if leases.of(token).is_some() || leases.0.len() < permits as usize {
            return None;
        }
        leases.first_end().map(|end| end - now)
    }

    /// Gives `token` a lease for `ttl` and takes it out of the queue.
    fn take(&mut self, request: Request<'_>, now: Instant) -> Attempt {
        let Request {
            keys,
            token,
            ttl,
            fencing,
        } = request;
        self.held
            .entry(keys.key().to_owned())
            .or_default()
            .grant(token, after(now, ttl));
        self.leave_queue(keys.key(), token);
        Attempt::Won {
            fence: fencing.then(|| self.next_fence()),
        }
    }
}

impl MemoryBackend {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) async fn acquire(&self, request: Request<'_>) -> Result<Attempt, LockError> {
        let now = Instant::now();
        let mut state = self.state();
        let at = state.tick(now);
        Ok(match state.busy(request.keys, request.token, now) {
            Some(left) => Attempt::Busy {
                remaining: Some(left),
                at_us: Some(at),
            },
            None => state.take(request, now),
        })
    }

    pub(crate) async fn listen(
        &self,
        _keys: &LockKeys,
        token: &str,
    ) -> Result<Listener, LockError> {
        Ok(Listener {
            registration: self.notifications.register(token, None, None),
            inbox: Inbox::Channel("memory".into()),
        })
    }

    pub(crate) fn listen_to(&self, channel: &str, token: &str) -> crate::notify::Registration {
        self.notifications.register(token, Some(channel), None)
    }

    pub(crate) fn announce(&self, channel: &str, announcement: crate::notify::Announcement) {
        self.notifications.announce(channel, announcement);
    }

    pub(crate) async fn acquire_queued(
        &self,
        request: Request<'_>,
        spec: &QueueSpec,
        _listener: &Listener,
    ) -> Result<Attempt, LockError> {
        let Request {
            keys,
            token,
            fencing,
            ..
        } = request;
        let now = Instant::now();
        let mut state = self.state();
        let at = state.tick(now);
        // Free, or handed to us by a release: (claim and) take it with our own TTL.
        let Some(remaining) = state.busy(keys, token, now) else {
            return Ok(state.take(request, now));
        };
        let queue = state.queues.entry(keys.key().to_owned()).or_default();
        queue.join(
            token,
            after(now, spec.alive_for),
            spec.claim_within,
            (fencing, keys.permits().unwrap_or(0)),
        );
        queue.prune(now);
        Ok(Attempt::Busy {
            remaining: Some(remaining),
            at_us: Some(at),
        })
    }

    pub(crate) async fn release(
        &self,
        keys: &LockKeys,
        token: &str,
    ) -> Result<ReleaseReport, LockError> {
        let now = Instant::now();
        let handoff = {
            let mut state = self.state();
            let at = state.tick(now);
            state.leave_queue(keys.key(), token);
            let Some(leases) = state.live(keys.key(), now) else {
                return Ok(ReleaseReport::single(false));
            };
            let before = leases.0.len();
            leases.0.retain(|lease| lease.token != token);
            let live = leases.0.len();
            if live == before {
                return Ok(ReleaseReport::single(false));
            }
            // A lock goes to its first waiter; a permit to the first waiter (within SCAN)
            // whose count of permits admits it.
            let next = state.queues.get_mut(keys.key()).and_then(|queue| {
                if keys.permits().is_none() {
                    return queue.first_waiter(now);
                }
                queue.first_admitted(now, |entry| live < entry.permits as usize)
            });
            match next {
                Some((next, entry)) => {
                    state.leave_queue(keys.key(), &next);
                    let fence = if entry.fencing { state.next_fence() } else { 0 };
                    state
                        .held
                        .entry(keys.key().to_owned())
                        .or_default()
                        .grant(&next, after(now, entry.claim_within));
                    Some(Handoff {
                        token: next,
                        fence,
                        at_us: at,
                    })
                }
                None => {
                    if live == 0 {
                        state.held.remove(keys.key());
                    }
                    None
                }
            }
        };
        if let Some(handoff) = handoff {
            self.notifications.handoff(handoff);
        }
        Ok(ReleaseReport::single(true))
    }

    pub(crate) async fn extend(
        &self,
        keys: &LockKeys,
        token: &str,
        by: Duration,
        mode: ExtendMode,
    ) -> Result<Option<Duration>, LockError> {
        let now = Instant::now();
        let mut state = self.state();
        state.tick(now);
        Ok(state.owned(keys.key(), token, now).map(|held| {
            let left = held.expires_at - now;
            let remaining = match mode {
                ExtendMode::Renew => left.max(by),
                ExtendMode::Add => left.saturating_add(by),
                ExtendMode::Set => by.max(Duration::from_millis(1)),
            };
            held.expires_at = after(now, remaining);
            remaining
        }))
    }

    pub(crate) async fn extend_many(
        &self,
        batch: &[Renewal<'_>],
    ) -> Vec<Result<Option<Duration>, LockError>> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for renewal in batch {
            outcomes.push(
                self.extend(renewal.keys, renewal.token, renewal.ttl, ExtendMode::Renew)
                    .await,
            );
        }
        outcomes
    }

    pub(crate) async fn holder(
        &self,
        keys: &LockKeys,
        token: &str,
    ) -> Result<Option<String>, LockError> {
        let now = Instant::now();
        let mut state = self.state();
        let Some(leases) = state.live(keys.key(), now) else {
            return Ok(None);
        };
        Ok(match keys.permits() {
            None => leases.0.first().map(|lease| lease.token.clone()),
            Some(_) => leases.of(token).map(|lease| lease.token.clone()),
        })
    }

    pub(crate) async fn remaining(&self, keys: &LockKeys) -> Result<Remaining, LockError> {
        let now = Instant::now();
        Ok(
            match self
                .state()
                .live(keys.key(), now)
                .and_then(|l| l.first_end())
            {
                Some(end) => Remaining::Expires(end - now),
                None => Remaining::Free,
            },
        )
    }

    pub(crate) async fn ping(&self) -> Result<(), LockError> {
        Ok(())
    }

    /// How many locks and queues are stored (for tests of reclamation).
    #[cfg(test)]
    fn stored(&self) -> (usize, usize) {
        let state = self.state();
        (state.held.len(), state.queues.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(
        keys: &'a LockKeys,
        token: &'a str,
        ttl: Duration,
        fencing: bool,
    ) -> Request<'a> {
        Request {
            keys,
            token,
            ttl,
            fencing,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn idle_locks_and_queues_are_reclaimed() {
        let backend = MemoryBackend::default();
        let spec = QueueSpec::new(Duration::from_millis(100), Duration::from_secs(1));
        for index in 0..500 {
            let keys = LockKeys::new("lock:", &format!("idle:{index}")).unwrap();
            let won = backend
                .acquire(request(&keys, "a", Duration::from_millis(50), true))
                .await
                .unwrap();
            assert!(matches!(won, Attempt::Won { fence: Some(_) }));
            let listener = backend.listen(&keys, "b").await.unwrap();
            let queued = request(&keys, "b", Duration::from_secs(1), false);
            backend
                .acquire_queued(queued, &spec, &listener)
                .await
                .unwrap();
        }
        assert_eq!(backend.stored(), (500, 500));
        // Everyone went away: the keys expire, the waiters stop refreshing.
        tokio::time::advance(Duration::from_secs(1)).await;
        let keys = LockKeys::new("lock:", "busy").unwrap();
        for _ in 0..2_000 {
            backend.remaining(&keys).await.unwrap();
            backend
                .extend(&keys, "x", Duration::from_secs(1), ExtendMode::Renew)
                .await
                .unwrap();
        }
        assert_eq!(backend.stored(), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn semaphores_count_permits_and_are_reclaimed() {
        let backend = MemoryBackend::default();
        let ttl = Duration::from_millis(50);
        for index in 0..200 {
            let keys = LockKeys::semaphore("lock:", &format!("sem:{index}"), 2).unwrap();
            for (token, won) in [("a", true), ("b", true), ("c", false)] {
                let attempt = backend
                    .acquire(request(&keys, token, ttl, false))
                    .await
                    .unwrap();
                assert_eq!(matches!(attempt, Attempt::Won { .. }), won, "{token}");
            }
            assert_eq!(
                backend.holder(&keys, "b").await.unwrap().as_deref(),
                Some("b")
            );
            assert_eq!(backend.holder(&keys, "c").await.unwrap(), None);
        }
        assert_eq!(backend.stored(), (200, 0));
        tokio::time::advance(ttl).await;
        let keys = LockKeys::semaphore("lock:", "sem:0", 2).unwrap();
        assert_eq!(backend.remaining(&keys).await.unwrap(), Remaining::Free);
        for _ in 0..1_000 {
            backend
                .extend(&keys, "x", Duration::from_secs(1), ExtendMode::Renew)
                .await
                .unwrap();
        }
        assert_eq!(backend.stored(), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn renewal_never_shortens_and_min_hold_never_deletes() {
        let backend = MemoryBackend::default();
        let keys = LockKeys::new("lock:", "x").unwrap();
        backend
            .acquire(request(&keys, "a", Duration::from_secs(2), false))
            .await
            .unwrap();
        let extended = backend
            .extend(&keys, "a", Duration::from_secs(60), ExtendMode::Add)
            .await
            .unwrap();
        assert_eq!(extended, Some(Duration::from_secs(62)));
        let renewed = backend
            .extend(&keys, "a", Duration::from_secs(2), ExtendMode::Renew)
            .await
            .unwrap();
        assert_eq!(renewed, Some(Duration::from_secs(62)));
        let kept = backend
            .extend(&keys, "a", Duration::ZERO, ExtendMode::Set)
            .await
            .unwrap();
        assert_eq!(kept, Some(Duration::from_millis(1)));
        let huge = backend
            .extend(&keys, "a", Duration::MAX, ExtendMode::Add)
            .await
            .unwrap();
        assert!(huge.is_some(), "saturates instead of panicking");
    }
}
