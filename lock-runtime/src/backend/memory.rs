//! The in-process backend: the same semantics as Redis (TTL expiry, owner tokens,
//! fencing, the queue of waiters and hand-off on release) for tests and single-process
//! programs.
//!
//! Time is `tokio::time::Instant`, so tests under a paused tokio clock can expire locks
//! by advancing time.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::channels::Leave;
use super::{
    Attempt, Backend, BoxFuture, Channels, ExtendMode, Handoff, QueueSpec, ReleaseWatch, Remaining,
};
use crate::LockError;
use crate::guard::Released;
use crate::key::LockKeys;

/// Locks in this process's memory.
#[derive(Debug, Default)]
pub(crate) struct MemoryBackend {
    state: Mutex<State>,
    channels: Arc<Channels>,
}

#[derive(Debug, Default)]
struct State {
    held: HashMap<String, Held>,
    fences: HashMap<String, u64>,
    queues: HashMap<String, Queue>,
}

/// The waiters of one lock, as in `acquire_queued.lua`: tokens in arrival order, and
/// which of them are still alive.
#[derive(Debug, Default)]
struct Queue {
    order: VecDeque<String>,
    waiting: HashMap<String, Waiting>,
}

#[derive(Debug)]
struct Waiting {
    alive_until: Instant,
    claim_within: Duration,
}

#[derive(Debug)]
struct Held {
    token: String,
    expires_at: Instant,
}

impl State {
    /// The live entry for `key`, dropping it first if it has expired.
    fn live(&mut self, key: &str) -> Option<&mut Held> {
        if self
            .held
            .get(key)
            .is_some_and(|held| held.expires_at <= Instant::now())
        {
            self.held.remove(key);
        }
        self.held.get_mut(key)
    }

    fn owned(&mut self, key: &str, token: &str) -> Option<&mut Held> {
        self.live(key).filter(|held| held.token == token)
    }

    /// Sets `key` to `token` for `ttl`, taking it out of the queue; the fencing token
    /// when asked for.
    fn take(&mut self, keys: &LockKeys, token: &str, ttl: Duration, fencing: bool) -> Attempt {
        self.held.insert(
            keys.key().to_owned(),
            Held {
                token: token.to_owned(),
                expires_at: Instant::now() + ttl,
            },
        );
        self.leave_queue(keys.key(), token);
        let fence = fencing.then(|| {
            let counter = self.fences.entry(keys.fence().to_owned()).or_default();
            *counter += 1;
            *counter
        });
        Attempt::Acquired { fence }
    }

    fn leave_queue(&mut self, key: &str, token: &str) {
        if let Some(queue) = self.queues.get_mut(key) {
            queue.waiting.remove(token);
        }
    }

    /// Pops waiters until a live one: the token the lock goes to, and for how long.
    fn next_waiter(&mut self, key: &str) -> Option<(String, Duration)> {
        let queue = self.queues.get_mut(key)?;
        let now = Instant::now();
        let next = loop {
            let Some(head) = queue.order.pop_front() else {
                break None;
            };
            if let Some(waiting) = queue.waiting.remove(&head)
                && waiting.alive_until > now
            {
                break Some((head, waiting.claim_within));
            }
        };
        if queue.order.is_empty() {
            self.queues.remove(key);
        }
        next
    }
}

impl MemoryBackend {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Backend for MemoryBackend {
    fn acquire<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
        ttl: Duration,
        fencing: bool,
    ) -> BoxFuture<'a, Result<Attempt, LockError>> {
        let mut state = self.state();
        let now = Instant::now();
        let outcome = match state.live(keys.key()) {
            Some(held) => Attempt::Busy {
                remaining: Some(held.expires_at - now),
            },
            None => state.take(keys, token, ttl, fencing),
        };
        Box::pin(std::future::ready(Ok(outcome)))
    }

    fn acquire_queued<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
        ttl: Duration,
        fencing: bool,
        queue: &'a QueueSpec,
    ) -> BoxFuture<'a, Result<Attempt, LockError>> {
        let mut state = self.state();
        let now = Instant::now();
        let outcome = match state.live(keys.key()) {
            // Free, or handed to us by a release.
            None => state.take(keys, token, ttl, fencing),
            Some(held) if held.token == token => state.take(keys, token, ttl, fencing),
            Some(held) => {
                let remaining = Some(held.expires_at - now);
                let entry = state.queues.entry(keys.key().to_owned()).or_default();
                let waiting = Waiting {
                    alive_until: now + queue.alive_for,
                    claim_within: queue.claim_within,
                };
                if entry.waiting.insert(token.to_owned(), waiting).is_none() {
                    entry.order.push_back(token.to_owned());
                }
                Attempt::Busy { remaining }
            }
        };
        Box::pin(std::future::ready(Ok(outcome)))
    }

    fn release<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Released, LockError>> {
        let released = {
            let mut state = self.state();
            state.leave_queue(keys.key(), token);
            let owned = state.owned(keys.key(), token).is_some();
            owned.then(|| match state.next_waiter(keys.key()) {
                Some((next, claim_within)) => {
                    state.held.insert(
                        keys.key().to_owned(),
                        Held {
                            token: next.clone(),
                            expires_at: Instant::now() + claim_within,
                        },
                    );
                    Handoff::To(next.into())
                }
                None => {
                    state.held.remove(keys.key());
                    Handoff::Free
                }
            })
        };
        let owned = released.is_some();
        if let Some(handoff) = released {
            self.channels.notify(keys.channel(), handoff);
        }
        Box::pin(std::future::ready(Ok(Released::single(owned))))
    }

    fn extend<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
        by: Duration,
        mode: ExtendMode,
    ) -> BoxFuture<'a, Result<Option<Duration>, LockError>> {
        let mut state = self.state();
        let now = Instant::now();
        let remaining = state.owned(keys.key(), token).map(|held| {
            let remaining = match mode {
                ExtendMode::Set => by,
                ExtendMode::Add => (held.expires_at - now) + by,
            };
            held.expires_at = now + remaining;
            remaining
        });
        Box::pin(std::future::ready(Ok(remaining)))
    }

    fn holder<'a>(
        &'a self,
        keys: &'a LockKeys,
    ) -> BoxFuture<'a, Result<Option<String>, LockError>> {
        let holder = self.state().live(keys.key()).map(|held| held.token.clone());
        Box::pin(std::future::ready(Ok(holder)))
    }

    fn remaining<'a>(&'a self, keys: &'a LockKeys) -> BoxFuture<'a, Result<Remaining, LockError>> {
        let now = Instant::now();
        let remaining = match self.state().live(keys.key()) {
            Some(held) => Remaining::Expires(held.expires_at - now),
            None => Remaining::Free,
        };
        Box::pin(std::future::ready(Ok(remaining)))
    }

    fn watch<'a>(&'a self, keys: &'a LockKeys) -> BoxFuture<'a, Result<ReleaseWatch, LockError>> {
        let (receiver, _first) = self.channels.join(keys.channel());
        let owner: Arc<dyn Leave> = self.channels.clone();
        Box::pin(std::future::ready(Ok(ReleaseWatch::new(
            receiver,
            keys.channel().to_owned(),
            owner,
        ))))
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), LockError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn fencing_refusal(&self) -> Option<&'static str> {
        None
    }
}
