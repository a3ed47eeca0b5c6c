//! The one error type of the crate.

use std::time::Duration;

/// Why a lock operation failed.
///
/// Every variant names the lock (or the server) and says what to do about it, so the
/// message can go straight into a log or an HTTP error body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another owner holds the lock and the request was not allowed to wait
    /// (`wait` is zero, the default).
    #[error(
        "lock `{key}` is held by another owner; retry later, or give the request a `wait` to queue for it"
    )]
    Busy {
        /// The Redis key of the lock.
        key: String,
    },

    /// The lock stayed held by another owner for the whole wait (or retry) budget.
    #[error(
        "lock `{key}` was still held by another owner after waiting {waited:?}; raise `wait` or shorten the holder's critical section"
    )]
    WaitTimeout {
        /// The Redis key of the lock.
        key: String,
        /// How long the request waited before giving up.
        waited: Duration,
    },

    /// The lock was held by this owner but is not any more: it expired (renewal failed or
    /// the TTL ran out) or something else deleted or overwrote the key.
    #[error(
        "lock `{key}` was lost: it expired or was taken over before the owner was done; use auto-renewal or a longer TTL, and treat work done since as unprotected"
    )]
    Lost {
        /// The Redis key of the lock.
        key: String,
    },

    /// No locker was given and no process-wide default is set.
    #[error(
        "no locker configured: call `lock_runtime::set_default(Locker::from_env()?)` at startup, or pass `locker = ...` to the attribute"
    )]
    NotConfigured,

    /// Invalid input: an empty lock name, a zero TTL, a renew interval not below the TTL,
    /// an unparsable URL, fencing on a backend that cannot fence, and so on.
    #[error("invalid lock configuration: {0}")]
    Config(String),

    /// The Redis server could not be reached (refused, timed out, bad credentials).
    #[error(
        "cannot connect to Redis at {server}: {source}; check that redis-server is running there and the URL is right"
    )]
    Connect {
        /// The server's address, with any password removed.
        server: String,
        /// The underlying error.
        #[source]
        source: redis::RedisError,
    },

    /// A Redis command for this lock failed (connection dropped, timeout, server error).
    /// The lock's state on the server is unknown; any key this owner may have set expires
    /// with its TTL and is also deleted by a best-effort cleanup.
    #[error("Redis command for lock `{key}` failed: {source}")]
    Backend {
        /// The Redis key of the lock.
        key: String,
        /// The underlying error.
        #[source]
        source: redis::RedisError,
    },

    /// Redlock: fewer than a quorum (a majority) of the servers answered in time, so the
    /// operation could not be decided. Says how many answered, how many granted, and why
    /// the others failed.
    #[error(
        "no quorum for {}: {answered} of {servers} Redis servers answered and {granted} granted, {needed} needed; {}",
        subject(key),
        failures.join("; ")
    )]
    Quorum {
        /// The Redis key of the lock (empty for `ping`).
        key: String,
        /// How many servers the lock lives on.
        servers: usize,
        /// How many must agree: `servers / 2 + 1`.
        needed: usize,
        /// How many answered within the per-server timeout.
        answered: usize,
        /// How many granted the operation (held, extended or released the lock for this owner).
        granted: usize,
        /// `server: reason` for each server that did not answer.
        failures: Vec<String>,
    },
}

fn subject(key: &str) -> String {
    if key.is_empty() {
        "ping".to_owned()
    } else {
        format!("lock `{key}`")
    }
}

impl LockError {
    /// `true` for the two contention outcomes, [`Busy`](Self::Busy) and
    /// [`WaitTimeout`](Self::WaitTimeout): another owner holds the lock. Everything else is a
    /// failure of this process or of the backend.
    pub fn is_contention(&self) -> bool {
        matches!(self, Self::Busy { .. } | Self::WaitTimeout { .. })
    }

    /// The lock's Redis key, for the variants that concern one lock.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Busy { key }
            | Self::WaitTimeout { key, .. }
            | Self::Lost { key }
            | Self::Backend { key, .. } => Some(key),
            Self::Quorum { key, .. } => (!key.is_empty()).then_some(key.as_str()),
            Self::NotConfigured | Self::Config(_) | Self::Connect { .. } => None,
        }
    }
}
