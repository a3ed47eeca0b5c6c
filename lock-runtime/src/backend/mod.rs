//! Where locks live: one Redis server (or a Cluster, or a Sentinel-managed server),
//! Redlock over several servers, or this process's memory. A closed set, dispatched by
//! [`Backend`]; every operation checks ownership by token and touches no other owner's
//! lock.

pub(crate) mod memory;
mod ops;
mod quorum;
pub(crate) mod redis;
pub(crate) mod redlock;
mod round;
mod stragglers;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use crate::LockError;
use crate::key::LockKeys;
use crate::notify::{Announcement, Registration};
use crate::queue::{Inbox, QueueSpec};
use crate::runtime::Tracker;

/// One acquire attempt: set the lock's key to `token` for `ttl` if it is free (with a
/// fencing token when `fencing`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    pub(crate) keys: &'a LockKeys,
    pub(crate) token: &'a str,
    pub(crate) ttl: Duration,
    pub(crate) fencing: bool,
}

/// The outcome of one acquire attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The lock is ours; `fence` is the fencing token when one was asked for.
    Won { fence: Option<u64> },
    /// Another owner holds it: its remaining TTL when known, and when the attempt ran on
    /// the server's clock (queued attempts: to judge hand-off messages).
    Busy {
        remaining: Option<Duration>,
        at_us: Option<u64>,
    },
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

impl Remaining {
    /// A `PTTL` reply.
    pub(crate) fn from_pttl(pttl: i64) -> Self {
        match u64::try_from(pttl) {
            Ok(ms) => Self::Expires(crate::millis::reported(ms)),
            Err(_) if pttl == -1 => Self::Forever,
            Err(_) => Self::Free,
        }
    }

    /// As a holder's remaining time: `Some(ZERO)` when free (try again at once).
    pub(crate) fn holder_left(self) -> Option<Duration> {
        match self {
            Self::Expires(left) => Some(left),
            Self::Free => Some(Duration::ZERO),
            Self::Forever => None,
        }
    }
}

/// How [`Backend::extend`] changes the expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExtendMode {
    /// Expire this long from now, unless it already expires later (never shortens).
    Renew,
    /// Add this much to the remaining time.
    Add,
    /// Expire exactly this long from now (`min_hold`; at least 1 ms, so never deletes).
    Set,
}

/// One lock to renew in [`Backend::extend_many`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Renewal<'a> {
    pub(crate) keys: &'a LockKeys,
    pub(crate) token: &'a str,
    /// Expire at least this long from now.
    pub(crate) ttl: Duration,
}

/// What a release found.
///
/// Whether this owner still held the lock, and on how many of the servers: one for a
/// single server, a Cluster or memory; N for Redlock, where the lock counts as held when
/// a quorum still had it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReleaseReport {
    /// The lock was still this owner's (on a quorum of servers, for Redlock) and is now
    /// released. `false`: it had expired or been taken, so the work done under it was not
    /// fully protected.
    pub held: bool,
    /// How many servers still held the key for this owner and released it. On Redlock,
    /// of those that answered before the release was decided: the others are released
    /// in the background.
    pub servers_held: usize,
    /// How many servers the lock lives on.
    pub servers: usize,
}

impl ReleaseReport {
    /// The outcome on a backend with one server.
    pub(crate) fn single(held: bool) -> Self {
        Self {
            held,
            servers_held: usize::from(held),
            servers: 1,
        }
    }
}

/// A waiter's registration for notifications, for the length of its wait.
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) registration: Registration,
    /// Where releases tell this waiter that the lock is its own.
    pub(crate) inbox: Inbox,
}

/// A script's reply that is not what the script returns: a `Backend` error for `keys`.
pub(crate) fn unexpected_reply(keys: &LockKeys, reply: &[i64]) -> LockError {
    LockError::Backend {
        name: keys.lock_name().to_owned(),
        source: ::redis::RedisError::from((
            ::redis::ErrorKind::UnexpectedReturnType,
            "unexpected reply to a lock script",
            format!("{reply:?}"),
        )),
    }
}

/// The backend of a locker.
#[derive(Debug)]
pub(crate) enum Backend {
    /// One Redis server, a Sentinel-managed one, or a Cluster.
    Redis(redis::RedisBackend),
    /// Redlock over independent Redis servers.
    Redlock(redlock::Redlock),
    /// This process's memory.
    Memory(memory::MemoryBackend),
}

macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Backend::Redis(backend) => backend.$method($($arg),*).await,
            Backend::Redlock(backend) => backend.$method($($arg),*).await,
            Backend::Memory(backend) => backend.$method($($arg),*).await,
        }
    };
}

impl Backend {
    /// This backend's (so its locker's) background work, for `Locker::flush`.
    pub(crate) fn tracker(&self) -> &Arc<Tracker> {
        match self {
            Self::Redis(backend) => &backend.tracker,
            Self::Redlock(backend) => &backend.tracker,
            Self::Memory(backend) => &backend.tracker,
        }
    }

    /// One atomic attempt.
    pub(crate) async fn acquire(&self, request: Request<'_>) -> Result<Attempt, LockError> {
        dispatch!(self.acquire(request))
    }

    /// Registers `token` for this lock's notifications; from the moment this returns,
    /// everything announced to it is heard (so attempt *after* listening).
    pub(crate) async fn listen(&self, keys: &LockKeys, token: &str) -> Result<Listener, LockError> {
        dispatch!(self.listen(keys, token))
    }

    /// Registers `token` for the announcements on `channel` (a channel of the lock
    /// `keys`, in its slot): a leader watch.
    pub(crate) async fn listen_to(
        &self,
        keys: &LockKeys,
        channel: &str,
        token: &str,
    ) -> Result<Registration, LockError> {
        match self {
            Self::Redis(backend) => backend.listen_to(keys, channel, token).await,
            Self::Memory(backend) => Ok(backend.listen_to(channel, token)),
            Self::Redlock(_) => Err(LockError::Config(redlock::NO_ANNOUNCEMENTS.into())),
        }
    }

    /// Makes sure `channel`, listened to through [`listen_to`](Self::listen_to), is
    /// subscribed on the current runtime's connection.
    pub(crate) async fn keep_listening(
        &self,
        keys: &LockKeys,
        channel: &str,
    ) -> Result<(), LockError> {
        match self {
            Self::Redis(backend) => backend.keep_listening(keys, channel).await,
            Self::Memory(_) | Self::Redlock(_) => Ok(()),
        }
    }

    /// Publishes `announcement` on `channel` (a channel of the lock `keys`).
    pub(crate) async fn announce(
        &self,
        keys: &LockKeys,
        channel: &str,
        announcement: Announcement,
    ) -> Result<(), LockError> {
        match self {
            Self::Redis(backend) => backend.announce(keys, channel, announcement).await,
            Self::Memory(backend) => {
                backend.announce(channel, announcement);
                Ok(())
            }
            Self::Redlock(_) => Err(LockError::Config(redlock::NO_ANNOUNCEMENTS.into())),
        }
    }

    /// An attempt of a listening waiter: like [`acquire`](Self::acquire), but a busy
    /// attempt joins (or refreshes its place in) the lock's queue, and a lock handed to
    /// `token` is claimed. Backends without a queue (Redlock) make a plain attempt.
    pub(crate) async fn acquire_queued(
        &self,
        request: Request<'_>,
        spec: &QueueSpec,
        listener: &Listener,
    ) -> Result<Attempt, LockError> {
        dispatch!(self.acquire_queued(request, spec, listener))
    }

    /// If `token` owns the key: hands it to the first live queued waiter, or deletes it.
    /// Also takes `token` out of the queue (a waiter that gives up calls it too).
    pub(crate) async fn release(
        &self,
        keys: &LockKeys,
        token: &str,
    ) -> Result<ReleaseReport, LockError> {
        dispatch!(self.release(keys, token))
    }

    /// Changes the expiry if `token` owns the key; the new remaining time, or `None`
    /// when it did not own it.
    pub(crate) async fn extend(
        &self,
        keys: &LockKeys,
        token: &str,
        by: Duration,
        mode: ExtendMode,
    ) -> Result<Option<Duration>, LockError> {
        dispatch!(self.extend(keys, token, by, mode))
    }

    /// [`extend`](Self::extend) with [`ExtendMode::Renew`] for many locks, in as few
    /// round trips as the backend allows; one outcome per renewal, in order.
    pub(crate) async fn extend_many(
        &self,
        batch: &[Renewal<'_>],
    ) -> Vec<Result<Option<Duration>, LockError>> {
        dispatch!(self.extend_many(batch))
    }

    /// Confirms that `replicas` replicas have the lock (see `RedisBackend::replicate`).
    /// Backends without replicas are refused when the request is validated.
    pub(crate) async fn replicate(
        &self,
        keys: &LockKeys,
        token: &str,
        ttl: Duration,
        replicas: u32,
        wait: Duration,
    ) -> Result<(Option<Duration>, u32), LockError> {
        match self {
            Self::Redis(backend) => backend.replicate(keys, token, ttl, replicas, wait).await,
            Self::Redlock(_) | Self::Memory(_) => Ok((None, 0)),
        }
    }

    /// Why this backend cannot confirm writes on replicas, if it cannot.
    pub(crate) fn durable_refusal(&self) -> Option<&'static str> {
        match self {
            Self::Redis(_) => None,
            Self::Redlock(_) => Some(
                "Redlock has no replicas to wait for: its durability is the quorum of independent servers",
            ),
            Self::Memory(_) => Some("the memory backend has no replicas to wait for"),
        }
    }

    /// The lock's current owner token, if any; for a semaphore, `token` if it holds a
    /// permit.
    pub(crate) async fn holder(
        &self,
        keys: &LockKeys,
        token: &str,
    ) -> Result<Option<String>, LockError> {
        dispatch!(self.holder(keys, token))
    }

    /// How long the lock stays held, without holding it.
    pub(crate) async fn remaining(&self, keys: &LockKeys) -> Result<Remaining, LockError> {
        dispatch!(self.remaining(keys))
    }

    /// Checks that the backend answers.
    pub(crate) async fn ping(&self) -> Result<(), LockError> {
        dispatch!(self.ping())
    }

    /// `None` when this backend's fencing tokens grow strictly per lock; otherwise why it
    /// cannot issue them and what to use instead.
    pub(crate) fn fencing_refusal(&self) -> Option<&'static str> {
        match self {
            Self::Redlock(_) => Some(redlock::NO_FENCING),
            Self::Redis(_) | Self::Memory(_) => None,
        }
    }

    /// `None` when this backend keeps semaphores; otherwise why it cannot.
    pub(crate) fn semaphore_refusal(&self) -> Option<&'static str> {
        match self {
            Self::Redlock(_) => Some(redlock::NO_SEMAPHORE),
            Self::Redis(_) | Self::Memory(_) => None,
        }
    }

    /// How much of a granted TTL to discount for clock drift between the servers and
    /// this process: the lease is `ttl - drift` from when the request was sent.
    pub(crate) fn drift(&self, ttl: Duration) -> Duration {
        match self {
            Self::Redlock(redlock) => redlock.drift(ttl),
            Self::Redis(_) | Self::Memory(_) => Duration::ZERO,
        }
    }

    /// Why `ttl` is too short for this backend, if it is.
    pub(crate) fn refuse_ttl(&self, ttl: Duration) -> Option<String> {
        match self {
            Self::Redlock(redlock) => redlock.refuse_ttl(ttl),
            Self::Redis(_) | Self::Memory(_) => None,
        }
    }

    /// Whether waiters queue first come, first served (not on Redlock: separate queues
    /// per server could disagree on who is first).
    pub(crate) fn queues(&self) -> bool {
        !matches!(self, Self::Redlock(_))
    }

    /// The owner token of attempt `n` of a request whose token is `base`. Redlock takes
    /// a fresh one per attempt, so a late clean-up of a failed attempt cannot delete what
    /// the next attempt won on a server; the others keep one token (it is the waiter's
    /// place in the queue).
    pub(crate) fn attempt_token<'a>(&self, base: &'a str, attempt: u32) -> Cow<'a, str> {
        match self {
            Self::Redlock(_) => Cow::Owned(format!("{base}.{attempt}")),
            Self::Redis(_) | Self::Memory(_) => Cow::Borrowed(base),
        }
    }

    /// The bound on one command's round trip (and so on any single wait for the backend).
    pub(crate) fn command_timeout(&self) -> Duration {
        match self {
            Self::Redis(redis) => redis.command_timeout(),
            Self::Redlock(redlock) => redlock.command_timeout(),
            Self::Memory(_) => Duration::from_secs(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pttl_replies() {
        assert_eq!(
            Remaining::from_pttl(1500),
            Remaining::Expires(Duration::from_millis(1500))
        );
        assert_eq!(Remaining::from_pttl(-1), Remaining::Forever);
        assert_eq!(Remaining::from_pttl(-2), Remaining::Free);
        assert_eq!(Remaining::Free.holder_left(), Some(Duration::ZERO));
        assert_eq!(Remaining::Forever.holder_left(), None);
    }
}
