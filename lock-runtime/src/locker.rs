//! The [`Locker`] handle and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::memory::MemoryBackend;
use crate::backend::redis::{RedisBackend, Timeouts};
use crate::backend::redlock::RedlockBackend;
use crate::backend::{Backend, Remaining};
use crate::key::LockKeys;
use crate::renew::Renewer;
use crate::{LockError, LockRequest};

/// The default `REDIS_URL` of [`Locker::from_env`].
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "lock:";

/// A handle to where locks live (a Redis server, or memory) plus defaults for requests.
///
/// Cheap to clone (an `Arc` inside); clones share one Redis connection and one pub/sub
/// connection. Create one per process and pass it around (axum `State`, a field), or
/// make it the process-wide default with [`set_default`](crate::set_default).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_runtime::LockError> {
/// use lock_runtime::Locker;
///
/// let locker = Locker::memory();
/// let guard = locker.lock("order:42").acquire().await?;
/// assert!(locker.is_locked("order:42").await?);
/// // A second owner is refused at once (no `wait` was given).
/// assert!(locker.lock("order:42").try_acquire().await?.is_none());
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Locker {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn Backend>,
    settings: LockerBuilder,
    renewer: Renewer,
}

impl fmt::Debug for Locker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Locker")
            .field("backend", &self.inner.backend)
            .field("settings", &self.inner.settings)
            .finish()
    }
}

impl Locker {
    /// A builder for the prefix, defaults and timeouts.
    pub fn builder() -> LockerBuilder {
        LockerBuilder::default()
    }

    /// Locks on the Redis server at `url` (`redis://[:password@]host:port[/db]`), with the
    /// default settings. Does not connect: the first operation does (see [`ping`](Self::ping)
    /// to check at startup). An unparsable URL is a [`LockError::Config`].
    pub fn redis(url: &str) -> Result<Self, LockError> {
        Self::builder().redis(url)
    }

    /// Locks on the server of an existing `redis::Client`, with the default settings.
    pub fn from_client(client: redis::Client) -> Self {
        let settings = Self::builder();
        let backend = RedisBackend::new(client, settings.timeouts());
        settings.build(Arc::new(backend))
    }

    /// Redlock: locks on a majority of the independent Redis servers at `urls` (3 or 5
    /// in production), so that losing a minority of them loses no lock. Same requests,
    /// guards, attribute and errors as one server, plus [`LockError::Quorum`] when a
    /// majority does not answer. Does not connect; [`ping`](Self::ping) connects to all
    /// and succeeds when a majority answers.
    ///
    /// Every operation goes to all servers at once with a per-server timeout
    /// ([`LockerBuilder::server_timeout`]); an acquire wins with a quorum (`N / 2 + 1`)
    /// of grants and time left of the TTL after the round trip and a clock-drift margin
    /// (1% of the TTL + 2 ms), which the guard's [`remaining`](crate::LockHandle::remaining)
    /// reports. Extend and renewal need a quorum too; without one the guard reports the
    /// lock lost when its validity ends. Fencing is refused with a [`LockError::Config`]
    /// that explains why.
    ///
    /// # One server with fencing, or Redlock?
    ///
    /// One server (`Locker::redis`) with `.fencing()` is the choice when the protected
    /// resource can check a fencing token: it stays correct even when a paused holder
    /// wakes up after its lock expired. Redlock is the choice when a lock must survive the
    /// loss of a Redis server and the work is safe to repeat in the rare case of an
    /// expired-while-paused holder.
    ///
    /// Restart rule: a server that crashed without fsync (`appendfsync always`) forgets
    /// the keys it held. Keep it down for at least the longest lock TTL before it
    /// rejoins, or a second owner can win a majority that includes it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_runtime::LockError> {
    /// use lock_runtime::{LockError, Locker};
    ///
    /// let locker = Locker::redlock([
    ///     "redis://10.0.0.1:6379",
    ///     "redis://10.0.0.2:6379",
    ///     "redis://10.0.0.3:6379",
    /// ])?; // does not connect yet
    /// // Fencing is refused before any server is asked.
    /// let refused = locker.lock("order:42").fencing().acquire().await.unwrap_err();
    /// assert!(matches!(refused, LockError::Config(_)), "{refused}");
    /// # Ok(()) }
    /// ```
    pub fn redlock<I>(urls: I) -> Result<Self, LockError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Self::builder().redlock(urls)
    }

    /// Locks on `REDIS_URLS` (comma-separated: Redlock over those servers) if it is set,
    /// else on `REDIS_URL` (default `redis://127.0.0.1:6379`), under the key prefix
    /// `LOCK_PREFIX` (default `lock:`).
    pub fn from_env() -> Result<Self, LockError> {
        let mut builder = Self::builder();
        if let Ok(prefix) = std::env::var("LOCK_PREFIX") {
            builder = builder.prefix(prefix);
        }
        if let Ok(urls) = std::env::var("REDIS_URLS") {
            let urls: Vec<&str> = urls
                .split(',')
                .map(str::trim)
                .filter(|url| !url.is_empty())
                .collect();
            if !urls.is_empty() {
                return builder.redlock(urls);
            }
        }
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned());
        builder.redis(&url)
    }

    /// Locks in this process's memory, with the same semantics as Redis (TTL expiry,
    /// owner tokens, fencing, wake-ups on release). For tests and single-process programs.
    pub fn memory() -> Self {
        Self::builder().build(Arc::new(MemoryBackend::default()))
    }

    /// Starts a request for the lock `name` (e.g. `"order:42"`). Nothing happens until the
    /// request's `acquire`, `try_acquire` or `run` is awaited.
    pub fn lock(&self, name: impl Into<String>) -> LockRequest {
        LockRequest::new(self.clone(), name.into())
    }

    /// Whether anyone holds the lock `name` (one round trip; does not take it).
    pub async fn is_locked(&self, name: &str) -> Result<bool, LockError> {
        let keys = LockKeys::new(self.prefix(), name)?;
        Ok(self.inner.backend.remaining(&keys).await? != Remaining::Free)
    }

    /// How long the lock `name` stays held unless renewed: `None` when it is free (or held
    /// by a key without expiry, which this crate never writes).
    pub async fn ttl(&self, name: &str) -> Result<Option<Duration>, LockError> {
        let keys = LockKeys::new(self.prefix(), name)?;
        Ok(match self.inner.backend.remaining(&keys).await? {
            Remaining::Expires(left) => Some(left),
            Remaining::Free | Remaining::Forever => None,
        })
    }

    /// Checks that the backend answers: [`LockError::Connect`] when it does not.
    pub async fn ping(&self) -> Result<(), LockError> {
        self.inner.backend.ping().await
    }

    /// The key prefix (default `lock:`).
    pub fn prefix(&self) -> &str {
        &self.inner.settings.prefix
    }

    /// The TTL of requests that set none.
    pub fn default_ttl(&self) -> Duration {
        self.inner.settings.ttl
    }

    /// The wait of requests that set none.
    pub fn default_wait(&self) -> Duration {
        self.inner.settings.wait
    }

    /// The longest a waiter sleeps between attempts when it hears no release.
    pub fn poll_interval(&self) -> Duration {
        self.inner.settings.poll_interval
    }

    pub(crate) fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    pub(crate) fn renewer(&self) -> &Renewer {
        &self.inner.renewer
    }
}

/// Settings of a [`Locker`]: key prefix, request defaults and Redis timeouts.
///
/// ```
/// use std::time::Duration;
/// use lock_runtime::Locker;
///
/// let locker = Locker::builder()
///     .prefix("shop:lock:")
///     .ttl(Duration::from_secs(10))
///     .wait(Duration::from_secs(1))
///     .redis("redis://127.0.0.1:6379/0")?;
/// assert_eq!(locker.prefix(), "shop:lock:");
/// # Ok::<(), lock_runtime::LockError>(())
/// ```
#[derive(Debug, Clone)]
pub struct LockerBuilder {
    prefix: String,
    ttl: Duration,
    wait: Duration,
    poll_interval: Duration,
    connect_timeout: Duration,
    command_timeout: Duration,
    server_timeout: Option<Duration>,
}

impl Default for LockerBuilder {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            ttl: Duration::from_secs(30),
            wait: Duration::ZERO,
            poll_interval: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(2),
            server_timeout: None,
        }
    }
}

impl LockerBuilder {
    /// Prepended to every lock name to form its Redis key (default `lock:`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The TTL of requests that set none (default 30 s; at least 1 ms).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The wait of requests that set none (default zero: fail at once when held).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// The longest a waiter sleeps between attempts when it hears no release (default
    /// 1 s). Waiters are woken by releases; this only bounds the damage of a missed one.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Bound on connecting to Redis (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Bound on one Redis command's round trip (default 2 s).
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Redlock: the bound on each server's answer (default: 1% of the lock's TTL,
    /// clamped to 5-50 ms). A server slower than this counts as failed for that
    /// operation, so a hung server costs one timeout, not the TTL.
    pub fn server_timeout(mut self, timeout: Duration) -> Self {
        self.server_timeout = Some(timeout);
        self
    }

    /// A Redlock locker over the independent Redis servers at `urls`; see
    /// [`Locker::redlock`].
    pub fn redlock<I>(self, urls: I) -> Result<Locker, LockError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.check()?;
        let urls: Vec<String> = urls
            .into_iter()
            .map(|url| url.as_ref().to_owned())
            .collect();
        if urls.is_empty() {
            return Err(LockError::Config(
                "Redlock needs at least one Redis URL (3 or 5 independent servers in production)"
                    .into(),
            ));
        }
        let mut servers = Vec::with_capacity(urls.len());
        let mut seen = std::collections::HashSet::new();
        for url in &urls {
            let client = self.client_for(url)?;
            let address = client.get_connection_info().addr().to_string();
            if !seen.insert(address.clone()) {
                return Err(LockError::Config(format!(
                    "Redlock server {address} is listed twice; the servers must be independent"
                )));
            }
            servers.push(RedisBackend::redlock_member(client, self.timeouts()));
        }
        if let Some(timeout) = self.server_timeout.filter(|timeout| timeout.is_zero()) {
            return Err(LockError::Config(format!(
                "the Redlock server timeout must be positive (got {timeout:?})"
            )));
        }
        let backend = RedlockBackend::new(servers, self.server_timeout);
        Ok(self.build(Arc::new(backend)))
    }

    /// A locker on the Redis server at `url`; see [`Locker::redis`].
    ///
    /// The connections set `TCP_NODELAY`: lock commands are small request/response
    /// exchanges that Nagle's algorithm would only delay.
    pub fn redis(self, url: &str) -> Result<Locker, LockError> {
        let client = self.client_for(url)?;
        self.client(client)
    }

    /// A client for `url` with `TCP_NODELAY`; an unparsable URL is a `Config` error.
    fn client_for(&self, url: &str) -> Result<redis::Client, LockError> {
        let invalid = |error: redis::RedisError| {
            LockError::Config(format!(
                "invalid Redis URL `{}` ({error}); expected redis://[:password@]host:port[/db]",
                redact(url)
            ))
        };
        let info = redis::IntoConnectionInfo::into_connection_info(url).map_err(invalid)?;
        let tcp = info.tcp_settings().clone().set_nodelay(true);
        redis::Client::open(info.set_tcp_settings(tcp)).map_err(invalid)
    }

    /// A locker on the server of `client`.
    pub fn client(self, client: redis::Client) -> Result<Locker, LockError> {
        self.check()?;
        let backend = RedisBackend::new(client, self.timeouts());
        Ok(self.build(Arc::new(backend)))
    }

    /// A locker in this process's memory; see [`Locker::memory`].
    pub fn memory(self) -> Result<Locker, LockError> {
        self.check()?;
        Ok(self.build(Arc::new(MemoryBackend::default())))
    }

    fn check(&self) -> Result<(), LockError> {
        for (what, value) in [
            ("default TTL", self.ttl),
            ("poll interval", self.poll_interval),
            ("connect timeout", self.connect_timeout),
            ("command timeout", self.command_timeout),
        ] {
            if value < Duration::from_millis(1) {
                return Err(LockError::Config(format!(
                    "the {what} must be at least 1 ms (got {value:?})"
                )));
            }
        }
        Ok(())
    }

    fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: self.connect_timeout,
            command: self.command_timeout,
        }
    }

    fn build(self, backend: Arc<dyn Backend>) -> Locker {
        Locker {
            inner: Arc::new(Inner {
                renewer: Renewer::new(backend.clone()),
                backend,
                settings: self,
            }),
        }
    }
}

/// `url` with any password replaced by `***`, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_url_is_a_config_error_without_the_password() {
        let err = Locker::redis("redis://:hunter2@[::1:6379").unwrap_err();
        assert!(matches!(err, LockError::Config(_)), "{err}");
        let message = err.to_string();
        assert!(message.contains("invalid Redis URL"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn not_a_url_is_a_config_error() {
        let err = Locker::redis("localhost:6379").unwrap_err();
        assert!(matches!(err, LockError::Config(_)), "{err}");
    }

    #[test]
    fn zero_default_ttl_is_refused() {
        let err = Locker::builder().ttl(Duration::ZERO).memory().unwrap_err();
        assert!(err.to_string().contains("default TTL"), "{err}");
    }
}
