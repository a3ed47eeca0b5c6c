//! The one error type of the crate.

use std::time::Duration;

/// Why a lock operation failed.
///
/// `Display` says briefly what happened to which lock (by the name given to
/// [`Locker::lock`](crate::Locker::lock), not the internal Redis key); the underlying cause,
/// when there is one, is [`source()`](std::error::Error::source) and is not repeated.
/// [`is_contention`](Self::is_contention), [`is_unavailable`](Self::is_unavailable) and
/// [`retry_after`](Self::retry_after) are what an HTTP handler or a retry loop needs:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use lock_runtime::{LockError, Locker};
///
/// let locker = Locker::memory();
/// // Held by another task (another owner, as another instance would be).
/// let _held = tokio::spawn(locker.lock("order:42").acquire()).await.unwrap().unwrap();
/// let status = match locker.lock("order:42").acquire().await {
///     Ok(_guard) => 200,
///     Err(error) if error.is_contention() => {
///         // The holder's remaining time, for a `Retry-After` header.
///         assert!(error.retry_after().is_some());
///         409
///     }
///     Err(error) if error.is_unavailable() => 503,
///     Err(_) => 500,
/// };
/// assert_eq!(status, 409);
/// # }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another owner holds the lock and the request was not allowed to wait (`wait` is
    /// zero, the default). Retry later, or give the request a `wait` to queue for it.
    #[error("lock `{name}` is held by another owner")]
    Busy {
        /// The lock's name.
        name: String,
        /// How long the holder's lease has left, when the attempt learned it.
        retry_after: Option<Duration>,
    },

    /// The lock stayed held by another owner for the whole wait (or retry) budget. Raise
    /// `wait`, or shorten the holder's critical section.
    #[error("lock `{name}` was still held by another owner after waiting {waited:?}")]
    WaitTimeout {
        /// The lock's name.
        name: String,
        /// How long the request waited before giving up.
        waited: Duration,
        /// How long the holder's lease had left at the last attempt, when known.
        retry_after: Option<Duration>,
    },

    /// The lock was held by this owner but is not any more: it expired (renewal failed
    /// or the TTL ran out) or something else deleted or overwrote the key. Work done since
    /// was not protected; auto-renewal or a longer TTL keeps it from expiring.
    #[error("lock `{name}` was lost before its owner was done")]
    Lost {
        /// The lock's name.
        name: String,
    },

    /// The lock was released (or given up with `keep`) by this owner: it can no longer
    /// be extended.
    #[error("lock `{name}` is no longer held by this owner: it was released")]
    NotHeld {
        /// The lock's name.
        name: String,
    },

    /// A durable acquire ([`LockRequest::durable`](crate::LockRequest::durable)): fewer
    /// replicas than asked confirmed the lock within the wait, so it was released again.
    #[error("lock `{name}` reached {acknowledged} of {needed} replicas in time")]
    NotReplicated {
        /// The lock's name.
        name: String,
        /// How many replicas confirmed it.
        acknowledged: u32,
        /// How many were asked for.
        needed: u32,
    },

    /// A task asked for a lock it already holds (directly, or through nested
    /// `#[distributed_lock]` functions with the same key); waiting for itself would never
    /// end, so it fails at once, whatever its wait. Ask for re-entry with
    /// [`LockRequest::reentrant`](crate::LockRequest::reentrant) (attribute option
    /// `reentrant`) to share the held lock instead. See there for what "the same task"
    /// means.
    #[error("lock `{name}` is already held by this task")]
    Reentrant {
        /// The lock's name.
        name: String,
    },

    /// No locker was given and no process-wide default is set: call
    /// [`set_default`](crate::set_default) at startup, or pass `locker = ...` to the
    /// attribute.
    #[error("no locker configured (lock_runtime::set_default was not called)")]
    NotConfigured,

    /// Invalid input: an empty lock name, a zero or huge TTL, a renew interval not below
    /// the TTL, an unparsable URL, fencing on a backend that cannot fence, and so on. The
    /// message says what to change.
    #[error("invalid lock configuration: {0}")]
    Config(String),

    /// The Redis server could not be reached: connection refused, host unknown or
    /// unreachable, TLS handshake failed (a wrong CA). A connection attempt that times
    /// out is a [`Backend`](Self::Backend) error instead; both are
    /// [`is_unavailable`](Self::is_unavailable).
    #[error("cannot connect to Redis at {server}")]
    Connect {
        /// The server's address, with any password removed.
        server: String,
        /// The underlying error.
        #[source]
        source: redis::RedisError,
    },

    /// The server refused this client: a wrong user name or password (`WRONGPASS`), none
    /// given where one is required (`NOAUTH`), or an ACL that does not allow a command,
    /// key or channel the lock needs (`NOPERM`; the crate docs list what it needs).
    #[error("Redis at {server} denied access")]
    Auth {
        /// The server's address, with any password removed.
        server: String,
        /// The server's answer.
        #[source]
        source: redis::RedisError,
    },

    /// A Redis command for this lock failed (connection dropped, timeout, server error such
    /// as out of memory). The lock's state on the server is unknown; a key this owner may
    /// have set expires with its TTL and is also deleted by a best-effort cleanup.
    #[error("a Redis command{} failed", ForLock(name))]
    Backend {
        /// The lock's name (empty for an operation on no lock, such as `ping`).
        name: String,
        /// The underlying error.
        #[source]
        source: redis::RedisError,
    },

    /// Redlock: fewer than a quorum (a majority) of the servers answered in time, so the
    /// operation could not be decided.
    #[error(
        "no quorum for {}: {answered} of {servers} servers answered, {granted} granted, {needed} needed ({})",
        subject(name.as_deref()),
        failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    Quorum {
        /// The lock's name (`None` for `ping`).
        name: Option<String>,
        /// How many servers the lock lives on.
        servers: usize,
        /// How many must agree: `servers / 2 + 1`.
        needed: usize,
        /// How many answered within the per-server timeout.
        answered: usize,
        /// How many granted the operation (held, extended or released the lock for this owner).
        granted: usize,
        /// Why each server that did not answer failed.
        failures: Vec<ServerFailure>,
    },
}

/// Why one server of a Redlock did not answer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ServerFailure {
    /// No answer within the per-server timeout.
    #[error("{server}: no answer within {after:?}")]
    Timeout {
        /// The server's address.
        server: String,
        /// The per-server timeout.
        after: Duration,
    },
    /// The server failed the operation.
    #[error("{server}: {source}")]
    Failed {
        /// The server's address.
        server: String,
        /// What it failed with.
        source: redis::RedisError,
    },
    /// The operation could not be sent to the server.
    #[error("{server}: {reason}")]
    Unusable {
        /// The server's address.
        server: String,
        /// Why.
        reason: String,
    },
}

/// ` for lock `name``, or nothing for an operation on no lock.
struct ForLock<'a>(&'a str);

impl std::fmt::Display for ForLock<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            "" => Ok(()),
            name => write!(f, " for lock `{name}`"),
        }
    }
}

fn subject(name: Option<&str>) -> String {
    name.map_or_else(|| "ping".to_owned(), |name| format!("lock `{name}`"))
}

impl LockError {
    /// `true` for the two contention outcomes, [`Busy`](Self::Busy) and
    /// [`WaitTimeout`](Self::WaitTimeout): another owner holds the lock. An HTTP service
    /// answers 409 (or 429, 503 with `Retry-After`).
    pub fn is_contention(&self) -> bool {
        matches!(self, Self::Busy { .. } | Self::WaitTimeout { .. })
    }

    /// `true` when the lock service could not decide: the server is unreachable, timed
    /// out or failed the command, a Redlock quorum did not answer, or the replicas did not
    /// confirm a durable acquire. Worth a retry after
    /// a pause; an HTTP service answers 503.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. }
                | Self::Backend { .. }
                | Self::Quorum { .. }
                | Self::NotReplicated { .. }
        )
    }

    /// How long the holder's lease had left, for contention errors where the attempt
    /// learned it: a fair `Retry-After`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Busy { retry_after, .. } | Self::WaitTimeout { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The name of the lock the error concerns, if it concerns one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Busy { name, .. }
            | Self::WaitTimeout { name, .. }
            | Self::Lost { name }
            | Self::NotHeld { name }
            | Self::NotReplicated { name, .. }
            | Self::Reentrant { name } => Some(name),
            Self::Backend { name, .. } => (!name.is_empty()).then_some(name.as_str()),
            Self::Quorum { name, .. } => name.as_deref(),
            Self::NotConfigured | Self::Config(_) | Self::Connect { .. } | Self::Auth { .. } => {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    fn io_error() -> redis::RedisError {
        redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    }

    #[test]
    fn display_names_the_lock_and_leaves_the_cause_to_source() {
        let error = LockError::Backend {
            name: "order:42".into(),
            source: io_error(),
        };
        let message = error.to_string();
        assert_eq!(message, "a Redis command for lock `order:42` failed");
        assert!(error.source().is_some());
        assert!(!message.contains("lock:{"), "{message}");
        let ping = LockError::Backend {
            name: String::new(),
            source: io_error(),
        };
        assert_eq!(ping.to_string(), "a Redis command failed");
    }

    #[test]
    fn helpers_classify() {
        let busy = LockError::Busy {
            name: "a".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        assert!(busy.is_contention() && !busy.is_unavailable());
        assert_eq!(busy.retry_after(), Some(Duration::from_secs(3)));
        let down = LockError::Connect {
            server: "127.0.0.1:1".into(),
            source: io_error(),
        };
        assert!(down.is_unavailable() && !down.is_contention());
        assert_eq!(down.retry_after(), None);
        let quorum = LockError::Quorum {
            name: None,
            servers: 3,
            needed: 2,
            answered: 1,
            granted: 1,
            failures: vec![ServerFailure::Timeout {
                server: "a:1".into(),
                after: Duration::from_millis(5),
            }],
        };
        assert!(quorum.is_unavailable());
        assert_eq!(
            quorum.to_string(),
            "no quorum for ping: 1 of 3 servers answered, 1 granted, 2 needed (a:1: no answer within 5ms)"
        );
        assert_eq!(LockError::NotConfigured.name(), None);
    }
}
