//! The in-process backend: the same semantics as Redis (TTL expiry, owner tokens,
//! fencing, wake-ups on release) for tests and single-process programs.
//!
//! Time is `tokio::time::Instant`, so tests under a paused tokio clock can expire locks
//! by advancing time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::channels::Leave;
use super::{Attempt, Backend, BoxFuture, Channels, ExtendMode, ReleaseWatch, Remaining};
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
}

impl Leave for Channels {
    fn leave(&self, channel: &str) {
        Channels::leave(self, channel);
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
        let outcome = match state.live(&keys.key) {
            Some(held) => Attempt::Busy {
                remaining: Some(held.expires_at - now),
            },
            None => {
                state.held.insert(
                    keys.key.clone(),
                    Held {
                        token: token.to_owned(),
                        expires_at: now + ttl,
                    },
                );
                let fence = fencing.then(|| {
                    let counter = state.fences.entry(keys.fence.clone()).or_default();
                    *counter += 1;
                    *counter
                });
                Attempt::Acquired { fence }
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
            let owned = state.owned(&keys.key, token).is_some();
            if owned {
                state.held.remove(&keys.key);
            }
            owned
        };
        if released {
            self.channels.notify(&keys.channel);
        }
        Box::pin(std::future::ready(Ok(Released::single(released))))
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
        let remaining = state.owned(&keys.key, token).map(|held| {
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
        let holder = self.state().live(&keys.key).map(|held| held.token.clone());
        Box::pin(std::future::ready(Ok(holder)))
    }

    fn remaining<'a>(&'a self, keys: &'a LockKeys) -> BoxFuture<'a, Result<Remaining, LockError>> {
        let now = Instant::now();
        let remaining = match self.state().live(&keys.key) {
            Some(held) => Remaining::Expires(held.expires_at - now),
            None => Remaining::Free,
        };
        Box::pin(std::future::ready(Ok(remaining)))
    }

    fn watch<'a>(&'a self, keys: &'a LockKeys) -> BoxFuture<'a, Result<ReleaseWatch, LockError>> {
        let (receiver, _first) = self.channels.join(&keys.channel);
        let owner: Arc<dyn Leave> = self.channels.clone();
        Box::pin(std::future::ready(Ok(ReleaseWatch::new(
            receiver,
            keys.channel.clone(),
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
