//! Where locks live: the backend trait and its implementations.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::LockError;
use crate::guard::Released;
use crate::key::LockKeys;

mod batch;
pub(crate) mod memory;
pub(crate) mod redis;
pub(crate) mod redlock;

mod channels;
pub(crate) use channels::{Channels, Handoff, ReleaseWatch};

/// A boxed, `Send` future: what the object-safe [`Backend`] methods return.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The outcome of one acquire attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The lock is ours; `fence` is the fencing token when one was asked for.
    Acquired { fence: Option<u64> },
    /// Another owner holds it; `remaining` is its TTL (`None` when unknown, or when the
    /// key has no expiry).
    Busy { remaining: Option<Duration> },
}

/// What an inspection of a lock key found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Remaining {
    /// No such key: the lock is free.
    Free,
    /// Held, expiring after this long.
    Expires(Duration),
    /// Held by a key with no expiry (not written by this crate).
    Forever,
}

/// How [`Backend::extend`] changes the expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExtendMode {
    /// Expire exactly this long from now (renewal, `min_hold`).
    Set,
    /// Add this much to the remaining time (`LockGuard::extend`).
    Add,
}

/// How a waiter stands in a lock's queue (see [`Backend::acquire_queued`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueueSpec {
    /// The entry is dropped when the waiter has not attempted again for this long (it
    /// crashed, or lost its connection).
    pub(crate) alive_for: Duration,
    /// A release hands the lock to this waiter for this long; unclaimed, it expires.
    pub(crate) claim_within: Duration,
    /// Where the release announces the hand-off ([`ReleaseWatch::inbox`]).
    pub(crate) inbox: Option<std::sync::Arc<str>>,
}

/// One lock to renew in [`Backend::extend_many`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Renewal<'a> {
    pub(crate) keys: &'a LockKeys,
    pub(crate) token: &'a str,
    /// Expire this long from now.
    pub(crate) ttl: Duration,
}

/// A place where locks live. Every method checks ownership by token; none touches
/// another owner's lock.
pub(crate) trait Backend: Send + Sync + fmt::Debug + 'static {
    /// One atomic attempt: set the key to `token` with `ttl` if absent (and INCR the
    /// fencing counter when `fencing`), or report the holder's remaining TTL.
    fn acquire<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
        ttl: Duration,
        fencing: bool,
    ) -> BoxFuture<'a, Result<Attempt, LockError>>;

    /// An attempt of a waiter that subscribed to the lock's releases: like
    /// [`acquire`](Self::acquire), but a busy attempt also joins (or refreshes its place
    /// in) the lock's first-in, first-out queue, and a lock a release handed to `token`
    /// is claimed. Backends without a queue make a plain attempt.
    fn acquire_queued<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
        ttl: Duration,
        fencing: bool,
        queue: &'a QueueSpec,
    ) -> BoxFuture<'a, Result<Attempt, LockError>> {
        let _ = queue;
        self.acquire(keys, token, ttl, fencing)
    }

    /// If `token` owns the key: hands it to the first live queued waiter, or deletes it,
    /// and publishes which it did. Also takes `token` out of the queue (so a waiter that
    /// gives up calls it too). Reports whether (and on how many servers) `token` owned it.
    fn release<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Released, LockError>>;

    /// Changes the expiry if `token` owns the key; returns the new remaining time, or
    /// `None` when it did not own it.
    fn extend<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
        by: Duration,
        mode: ExtendMode,
    ) -> BoxFuture<'a, Result<Option<Duration>, LockError>>;

    /// [`extend`](Self::extend) with [`ExtendMode::Set`] for many locks at once, in as few
    /// round trips as the backend allows; one outcome per renewal, in order.
    fn extend_many<'a>(
        &'a self,
        batch: &'a [Renewal<'a>],
    ) -> BoxFuture<'a, Vec<Result<Option<Duration>, LockError>>> {
        Box::pin(futures_util::future::join_all(batch.iter().map(
            |renewal| self.extend(renewal.keys, renewal.token, renewal.ttl, ExtendMode::Set),
        )))
    }

    /// The lock's current owner token, if any.
    fn holder<'a>(&'a self, keys: &'a LockKeys)
    -> BoxFuture<'a, Result<Option<String>, LockError>>;

    /// How long the lock stays held, without holding it.
    fn remaining<'a>(&'a self, keys: &'a LockKeys) -> BoxFuture<'a, Result<Remaining, LockError>>;

    /// Subscribes to the lock's releases. When this returns, every release from then on
    /// is seen by the watch (so a caller retries *after* subscribing and loses no wake-up):
    /// releases that free the lock and, for queued attempts that name the watch's inbox,
    /// hand-offs.
    fn watch<'a>(&'a self, keys: &'a LockKeys) -> BoxFuture<'a, Result<ReleaseWatch, LockError>>;

    /// Checks that the backend answers.
    fn ping(&self) -> BoxFuture<'_, Result<(), LockError>>;

    /// `None` when fencing tokens from this backend grow strictly per lock; otherwise
    /// why it cannot issue them and what to use instead.
    fn fencing_refusal(&self) -> Option<&'static str>;

    /// How much of a granted TTL to discount for clock drift between the servers and
    /// this process: the lease is `ttl - drift` from when the request was sent.
    fn drift(&self, ttl: Duration) -> Duration {
        let _ = ttl;
        Duration::ZERO
    }
}
