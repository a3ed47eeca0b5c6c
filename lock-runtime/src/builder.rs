//! [`LockerBuilder`]: a locker's settings from code, the environment or both, and the
//! constructors that check them, parse the URLs and build the backend.

use std::time::Duration;

use crate::backend::Backend;
use crate::backend::memory::MemoryBackend;
use crate::backend::redis::RedisBackend;
use crate::backend::redlock::Redlock;
use crate::driver::Tls;
use crate::driver::tuned;
use crate::settings::{Settings, Target};
use crate::{LockError, Locker};

/// Settings of a [`Locker`]: key prefix, request defaults and Redis timeouts; then a
/// constructor ([`redis`](Self::redis), [`client`](Self::client),
/// [`connection`](Self::connection), [`sentinel`](Self::sentinel),
/// [`cluster`](Self::cluster), [`redlock`](Self::redlock), [`memory`](Self::memory), or
/// [`build`](Self::build) for the target read by [`from_env`](Self::from_env)). The crate
/// docs ("Choosing a backend") compare the backends.
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
#[derive(Debug, Clone, Default)]
pub struct LockerBuilder {
    settings: Settings,
    target: Target,
    tls: Tls,
}

impl LockerBuilder {
    /// The settings and target from the environment, so that code can change some of
    /// them before [`build`](Self::build):
    ///
    /// | variable | meaning | default |
    /// | --- | --- | --- |
    /// | `REDIS_SENTINEL_URLS`, `REDIS_SENTINEL_MASTER` | comma-separated URLs of sentinels, and the name of the master they watch | unset |
    /// | `REDIS_CLUSTER_URLS` | comma-separated URLs of Redis Cluster nodes (any few) | unset |
    /// | `REDIS_URLS` | comma-separated URLs: Redlock over those servers | unset |
    /// | `REDIS_URL` | one server (used when neither of the above is set) | `redis://127.0.0.1:6379` |
    /// | `LOCK_PREFIX` | the key prefix | `lock:` |
    /// | `LOCK_TTL` | the default TTL | `30s` |
    /// | `LOCK_WAIT` | the default wait | `0` |
    /// | `LOCK_POLL_INTERVAL` | [`poll_interval`](Self::poll_interval) | `1s` |
    /// | `LOCK_CONNECT_TIMEOUT` | [`connect_timeout`](Self::connect_timeout) | `2s` |
    /// | `LOCK_COMMAND_TIMEOUT` | [`command_timeout`](Self::command_timeout) | `2s` |
    /// | `LOCK_SERVER_TIMEOUT` | [`server_timeout`](Self::server_timeout) (Redlock) | 1% of the TTL, 5-50 ms |
    ///
    /// Durations are a number with a unit (`250ms`, `30s`, `2m`, `1h`) or plain seconds
    /// (`30`, `0.5`). A value that does not parse is a [`LockError::Config`] naming the
    /// variable; an empty one counts as unset.
    ///
    /// ```
    /// # fn main() -> Result<(), lock_runtime::LockError> {
    /// use std::time::Duration;
    /// use lock_runtime::LockerBuilder;
    ///
    /// // REDIS_URL, LOCK_PREFIX... from the environment; one timeout from code.
    /// let locker = LockerBuilder::from_env()?
    ///     .command_timeout(Duration::from_millis(500))
    ///     .build()?;
    /// # let _ = locker; Ok(()) }
    /// ```
    pub fn from_env() -> Result<Self, LockError> {
        let (settings, target) =
            crate::env::read(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))?;
        Ok(Self {
            settings,
            target,
            tls: Tls::default(),
        })
    }

    /// Prepended to every lock name to form its Redis key (default `lock:`). May not
    /// contain `{` or `}` (the lock's name is the key's Redis Cluster hash tag).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.prefix = prefix.into();
        self
    }

    /// The TTL of requests that set none (default 30 s; at least 1 ms).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.settings.ttl = ttl;
        self
    }

    /// The wait of requests that set none (default zero: fail at once when held).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.settings.wait = wait;
        self
    }

    /// The longest a waiter sleeps between attempts when it hears no release (default
    /// 1 s; 1 ms to 1 h). Waiters are woken by releases; this only bounds the damage of a
    /// missed notification, and a crashed waiter holds the queue up for two intervals.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.settings.poll_interval = interval;
        self
    }

    /// Bound on connecting to Redis (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// Bound on one Redis command's round trip (default 2 s).
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.settings.command_timeout = timeout;
        self
    }

    /// Redlock: the bound on each server's answer (default: 1% of the lock's TTL,
    /// clamped to 5-50 ms). A server slower than this counts as failed for that
    /// operation, so a hung server costs one timeout, not the TTL.
    pub fn server_timeout(mut self, timeout: Duration) -> Self {
        self.settings.server_timeout = Some(timeout);
        self
    }

    /// Certificates for `rediss://` URLs: a CA to trust (`root_cert`, PEM) instead of the
    /// operating system's roots, and a client certificate for mutual TLS (`client_tls`).
    ///
    /// With rustls (a `tls-rustls*` feature) they are used by every constructor that takes
    /// URLs. With `tls-native-tls` alone, only by [`redis`](Self::redis) and
    /// [`redlock`](Self::redlock): redis-rs takes certificates for Cluster and Sentinel
    /// through rustls only, so [`cluster`](Self::cluster) and [`sentinel`](Self::sentinel)
    /// then refuse them with a [`LockError::Config`]. Certificates that cannot be parsed
    /// are a [`LockError::Config`] of the constructor; a TLS handshake that fails (a wrong
    /// CA) is a [`LockError::Connect`] of the first operation.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = std::fs::read("/etc/redis/ca.pem")?; // your CA's certificate, PEM
    /// let locker = lock_runtime::Locker::builder()
    ///     .tls_certificates(lock_runtime::redis::TlsCertificates { client_tls: None, root_cert: Some(ca) })
    ///     .redis("rediss://cache.internal:6380")?;
    /// # let _ = locker; Ok(()) }
    /// ```
    #[cfg(any(feature = "tls-rustls", feature = "tls-native-tls"))]
    #[cfg_attr(
        docsrs,
        doc(cfg(any(feature = "tls-rustls", feature = "tls-native-tls")))
    )]
    pub fn tls_certificates(mut self, certificates: redis::TlsCertificates) -> Self {
        self.tls.certificates = Some(certificates);
        self
    }

    /// The settings, checked, and the certificates, if given, checked to be PEM.
    fn checked(&self) -> Result<Settings, LockError> {
        #[cfg(any(feature = "tls-rustls", feature = "tls-native-tls"))]
        if let Some(certificates) = &self.tls.certificates {
            crate::url::check_certificates(certificates)?;
        }
        self.settings.clone().check()
    }

    /// A locker on the target of [`from_env`](Self::from_env) (by default the Redis
    /// server at `redis://127.0.0.1:6379`).
    pub fn build(self) -> Result<Locker, LockError> {
        match self.target.clone() {
            Target::Redis(url) => self.redis(&url),
            Target::Redlock(urls) => self.redlock(urls),
            Target::Cluster(urls) => self.cluster(urls),
            Target::Sentinel { master, urls } => self.sentinel(&master, urls),
        }
    }

    /// A locker on the Redis server at `url`; see [`Locker::redis`].
    ///
    /// The connection speaks RESP3 (Redis 6 or newer), so release notifications share it
    /// with commands, and sets `TCP_NODELAY`: lock commands are small request/response
    /// exchanges that Nagle's algorithm would only delay.
    pub fn redis(self, url: &str) -> Result<Locker, LockError> {
        let settings = self.checked()?;
        let client = crate::url::client(url, &self.tls)?;
        let backend = RedisBackend::single(client, &settings.prefix, settings.timeouts());
        Ok(Locker::new(Backend::Redis(backend), settings))
    }

    /// A locker on the server of `client` (its URL's settings are used as they are, with
    /// RESP3).
    pub fn client(self, client: redis::Client) -> Result<Locker, LockError> {
        let settings = self.checked()?;
        let info = client.get_connection_info().clone();
        let client = crate::url::from_info(tuned(info), &self.tls)
            .map_err(|error| LockError::Config(format!("this client cannot be used ({error})")))?;
        let backend = RedisBackend::single(client, &settings.prefix, settings.timeouts());
        Ok(Locker::new(Backend::Redis(backend), settings))
    }

    /// Locks through the program's own connection manager: commands run on it, and the
    /// locker opens no connection of its own.
    ///
    /// Its push messages belong to the program, so the locker subscribes nothing on it:
    /// waiters are not woken by releases but try again every
    /// [`poll_interval`](Self::poll_interval) (set it short), and a durable acquire's
    /// `WAIT` blocks the connection for up to its wait. Give the locker a URL or a
    /// [`client`](Self::client) instead to get both. The timeouts are the connection's own.
    pub fn connection(self, manager: redis::aio::ConnectionManager) -> Result<Locker, LockError> {
        let settings = self.checked()?;
        let backend = RedisBackend::shared(manager, &settings.prefix, settings.timeouts());
        Ok(Locker::new(Backend::Redis(backend), settings))
    }

    /// Redlock: locks on a majority of the independent Redis servers at `urls` (3 or 5
    /// in production), so that losing a minority of them loses no lock. Same requests,
    /// guards, attribute and errors as one server, plus [`LockError::Quorum`] when a
    /// majority does not answer. Does not connect; [`Locker::ping`] connects to all and
    /// succeeds when a majority answers.
    ///
    /// Every operation goes to all servers at once with a per-server timeout
    /// ([`server_timeout`](Self::server_timeout)); an acquire wins with a quorum (`N / 2 +
    /// 1`) of grants and time left of the TTL after the round trip and a clock-drift margin
    /// (1% of the TTL + 2 ms), which the guard's
    /// [`remaining`](crate::LockHandle::remaining) reports. Extend and renewal need a
    /// quorum too; without one the guard reports the lock lost when its validity ends.
    /// Fencing is refused with a [`LockError::Config`] that explains why, and so is a TTL
    /// too short to outlast the drift margin and a server's answer.
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
    pub fn redlock<I>(self, urls: I) -> Result<Locker, LockError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let settings = self.checked()?;
        let clients = urls
            .into_iter()
            .map(|url| crate::url::client(url.as_ref(), &self.tls))
            .collect::<Result<Vec<_>, _>>()?;
        let backend = Redlock::new(
            clients,
            &settings.prefix,
            settings.server_timeout,
            settings.timeouts(),
        )?;
        Ok(Locker::new(Backend::Redlock(backend), settings))
    }

    /// Locks on a Redis Cluster (Redis 7 or newer), reached through any of `urls` (a few
    /// of its nodes; the rest are discovered). Same requests, guards, attribute, waiting,
    /// renewal and fencing as one server; each lock lives on the master of its slot.
    ///
    /// Every lock's keys and channel share one slot (the whole lock name is the hash tag),
    /// so every script runs on one node; waiters hear hand-offs on sharded pub/sub in that
    /// slot (one shard, not the whole cluster); renewals are batched per slot. Requests
    /// follow `MOVED`/`ASK` redirections and fail over with the cluster; while a slot has
    /// no master, its requests fail with typed errors within the command timeout.
    ///
    /// Replication is asynchronous: a master that fails before a lock's write reached its
    /// replica loses the lock, and a second owner can take it on the promoted replica. Use
    /// fencing tokens where that matters: they keep growing across the failover as long as
    /// the replica's clock is not behind the old master's by more than the time between
    /// two acquisitions (see the crate docs, "Fencing").
    ///
    /// The URLs carry one set of credentials, used for every node: URLs that differ are a
    /// [`LockError::Config`].
    ///
    /// ```
    /// # fn main() -> Result<(), lock_runtime::LockError> {
    /// let locker = lock_runtime::Locker::builder()
    ///     .cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000", "redis://10.0.0.3:7000"])?;
    /// # let _ = locker; Ok(()) }
    /// ```
    pub fn cluster<I>(self, urls: I) -> Result<Locker, LockError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let settings = self.checked()?;
        let nodes = urls
            .into_iter()
            .map(|url| crate::url::connection_info(url.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if nodes.is_empty() {
            return Err(LockError::Config(
                "a Redis Cluster needs the URL of at least one of its nodes".into(),
            ));
        }
        crate::url::check_group(&nodes, &self.tls, "Redis Cluster")?;
        let backend = RedisBackend::cluster(
            nodes,
            self.tls.clone(),
            &settings.prefix,
            settings.timeouts(),
        );
        Ok(Locker::new(Backend::Redis(backend), settings))
    }

    /// Locks on the master that the sentinels at `urls` watch under the name `master`
    /// (Redis Sentinel: one logical server with automatic failover). The URLs carry one
    /// set of credentials (URLs that differ are a [`LockError::Config`]), used for the
    /// sentinels and for the master, and the first URL's database; a `rediss://` URL
    /// makes both use TLS.
    ///
    /// The locker asks the sentinels for the master when it connects, and again whenever
    /// the master's connection says it may have moved (a demoted master's `READONLY`, a
    /// dropped or refused connection, a timeout): during a failover, requests fail with
    /// typed errors ([`LockError::is_unavailable`]) within their timeouts, then go to the
    /// new master.
    ///
    /// Replication is asynchronous: a lock written to a master that fails before its
    /// replica received it is lost in the failover, and a second owner can take it on the
    /// promoted replica. [`durable`](crate::LockRequest::durable) acquires wait until the
    /// replicas have the lock; fencing tokens keep growing across the failover as long as
    /// the promoted server's clock is not behind the old master's by more than the time
    /// between two acquisitions (see the crate docs, "Fencing"). A master that was only
    /// paused may also accept writes for a while after the failover, until the sentinels
    /// demote it; fencing covers that window too, under the same clock assumption.
    ///
    /// ```
    /// # fn main() -> Result<(), lock_runtime::LockError> {
    /// let locker = lock_runtime::Locker::builder().sentinel(
    ///     "primary",
    ///     ["redis://10.0.0.1:26379", "redis://10.0.0.2:26379", "redis://10.0.0.3:26379"],
    /// )?;
    /// # let _ = locker; Ok(()) }
    /// ```
    pub fn sentinel<I>(self, master: &str, urls: I) -> Result<Locker, LockError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let settings = self.checked()?;
        let sentinels = urls
            .into_iter()
            .map(|url| crate::url::connection_info(url.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if sentinels.is_empty() || master.is_empty() {
            return Err(LockError::Config(
                "Redis Sentinel needs the master's name and the URL of at least one sentinel"
                    .into(),
            ));
        }
        crate::url::check_group(&sentinels, &self.tls, "Redis Sentinel")?;
        let backend = RedisBackend::sentinel(
            master,
            &sentinels,
            &self.tls,
            &settings.prefix,
            settings.timeouts(),
        )
        .map_err(|error| LockError::Config(format!("the sentinels cannot be used ({error})")))?;
        Ok(Locker::new(Backend::Redis(backend), settings))
    }

    /// A locker in this process's memory; see [`Locker::memory`].
    pub fn memory(self) -> Result<Locker, LockError> {
        let settings = self.checked()?;
        Ok(Locker::new(
            Backend::Memory(MemoryBackend::default()),
            settings,
        ))
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
    fn settings_are_bounded_where_they_enter() {
        let err = Locker::builder().ttl(Duration::ZERO).memory().unwrap_err();
        assert!(err.to_string().contains("default TTL"), "{err}");
        let err = Locker::builder()
            .poll_interval(Duration::MAX)
            .memory()
            .unwrap_err();
        assert!(err.to_string().contains("poll interval"), "{err}");
        let err = Locker::builder().prefix("a{b}:").memory().unwrap_err();
        assert!(err.to_string().contains("prefix"), "{err}");
        let err = Locker::builder()
            .server_timeout(Duration::ZERO)
            .memory()
            .unwrap_err();
        assert!(err.to_string().contains("server timeout"), "{err}");
    }
}
