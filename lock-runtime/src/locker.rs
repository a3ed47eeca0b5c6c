//! The [`Locker`] handle: where locks live, plus defaults for requests.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{Backend, Remaining};
use crate::key::LockKeys;
use crate::owners::Owners;
use crate::renew::Renewer;
use crate::settings::Settings;
use crate::{LockError, LockRequest, LockerBuilder};

/// A handle to where locks live (a Redis server, or memory) plus defaults for requests.
///
/// Cheap to clone (an `Arc` inside); clones share their connections and renewal tasks
/// (one set per tokio runtime that uses them).
/// Create one per process and pass it around (axum `State`, a field), or make it the
/// process-wide default with [`set_default`](crate::set_default). See the crate docs
/// ("Connecting") for the connections a locker opens.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_runtime::LockError> {
/// use lock_runtime::Locker;
///
/// let locker = Locker::memory();
/// let guard = locker.lock("order:42").acquire().await?;
/// assert!(locker.is_locked("order:42").await?);
/// // A second owner (here another task) is refused at once (no `wait` was given).
/// let second = tokio::spawn(locker.lock("order:42").try_acquire()).await.unwrap()?;
/// assert!(second.is_none());
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Locker {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<Backend>,
    settings: Settings,
    renewer: Renewer,
    /// Which task holds which lock, for re-entry.
    owners: Owners,
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
    pub(crate) fn new(backend: Backend, settings: Settings) -> Self {
        let backend = Arc::new(backend);
        Self {
            inner: Arc::new(Inner {
                renewer: Renewer::new(backend.clone()),
                backend,
                settings,
                owners: Owners::default(),
            }),
        }
    }

    /// A builder for the prefix, defaults and timeouts.
    pub fn builder() -> LockerBuilder {
        LockerBuilder::default()
    }

    /// Locks on the Redis server at `url` (`redis://[user:password@]host:port[/db]`, or
    /// `rediss://` for TLS), with the default settings. Does not connect: the first
    /// operation does (see [`ping`](Self::ping) to check at startup). An unparsable URL
    /// is a [`LockError::Config`].
    pub fn redis(url: &str) -> Result<Self, LockError> {
        Self::builder().redis(url)
    }

    /// Redlock: locks on a majority of the independent Redis servers at `urls`; see
    /// [`LockerBuilder::redlock`].
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

    /// Locks on a Redis Cluster reached through any of `urls`; see
    /// [`LockerBuilder::cluster`].
    pub fn cluster<I>(urls: I) -> Result<Self, LockError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Self::builder().cluster(urls)
    }

    /// Locks on the master that the sentinels at `urls` watch as `master`; see
    /// [`LockerBuilder::sentinel`].
    pub fn sentinel<I>(master: &str, urls: I) -> Result<Self, LockError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Self::builder().sentinel(master, urls)
    }

    /// Locks on the server of an existing `redis::Client` (its address, credentials and
    /// TLS settings; the locker opens its own connections through it, speaking RESP3).
    pub fn from_client(client: redis::Client) -> Result<Self, LockError> {
        Self::builder().client(client)
    }

    /// Locks through the program's own connection manager, with the default settings;
    /// see [`LockerBuilder::connection`] (waiters poll instead of being woken).
    pub fn from_connection(manager: redis::aio::ConnectionManager) -> Self {
        let settings = crate::settings::Settings::default();
        let backend = crate::backend::redis::RedisBackend::shared(
            manager,
            &settings.prefix,
            settings.timeouts(),
        );
        Self::new(Backend::Redis(backend), settings)
    }

    /// A locker configured from the environment; see [`LockerBuilder::from_env`] for the
    /// variables.
    pub fn from_env() -> Result<Self, LockError> {
        LockerBuilder::from_env()?.build()
    }

    /// Locks in this process's memory, with the same semantics as Redis (TTL expiry,
    /// owner tokens, fencing, first-come first-served hand-off). For tests and
    /// single-process programs.
    pub fn memory() -> Self {
        Self::new(Backend::Memory(Default::default()), Settings::default())
    }

    /// Starts a request for the lock `name` (e.g. `"order:42"`). Nothing happens until the
    /// request's `acquire`, `try_acquire` or `run` is awaited.
    pub fn lock(&self, name: impl Into<String>) -> LockRequest {
        LockRequest::new(self.clone(), name.into())
    }

    /// Starts a request for one of `permits` permits of the semaphore `name` (e.g.
    /// `"api:tenant-7"`): at most `permits` owners hold it at once. The request and its
    /// guard are those of a lock ([`LockRequest`], [`LockGuard`](crate::LockGuard)):
    /// the TTL is each permit's lease, so the permit of an owner that died comes back
    /// when its lease ends; waiters queue first come, first served and a release hands
    /// its permit to the first of them; `auto_renew` renews the lease with the locker's
    /// locks; `fencing` gives each acquisition a token larger than every earlier one of
    /// this semaphore.
    ///
    /// `permits` is the request's, not stored with the semaphore: each acquire is
    /// admitted while fewer than its own `permits` leases are live. Changing it for a
    /// name that has holders takes effect at once for new acquires and revokes
    /// nothing: after lowering it from 4 to 2, the 4 holders keep their permits, and a
    /// new acquire waits until fewer than 2 are held; after raising it, new acquires are
    /// admitted up to the new count at once. A released permit goes to the first waiter,
    /// in arrival order, whose count admits it (a waiter with a lower count waits while
    /// more are held, and does not hold up those behind it).
    ///
    /// A semaphore is a different thing on the server than a lock of the same name
    /// (`lock:{api:7}:sem`, a sorted set of owner tokens scored by lease end). Refused
    /// with a [`LockError::Config`] by Redlock (see there) and for 0 permits.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_runtime::LockError> {
    /// use std::time::Duration;
    /// use lock_runtime::Locker;
    ///
    /// let locker = Locker::memory();
    /// let first = locker.semaphore("api:tenant-7", 2).acquire().await?;
    /// let second = locker.semaphore("api:tenant-7", 2).acquire().await?;
    /// // Both permits are taken: a third caller is refused (or waits, with `wait`).
    /// assert!(locker.semaphore("api:tenant-7", 2).try_acquire().await?.is_none());
    /// first.release().await?;
    /// let third = locker
    ///     .semaphore("api:tenant-7", 2)
    ///     .wait(Duration::from_secs(1))
    ///     .acquire()
    ///     .await?;
    /// # drop((second, third)); Ok(()) }
    /// ```
    pub fn semaphore(&self, name: impl Into<String>, permits: u32) -> LockRequest {
        LockRequest::semaphore(self.clone(), name.into(), permits)
    }

    /// Starts a campaign for the leadership `name` (e.g. `"scheduler"`): await it to be
    /// elected ([`Leadership`](crate::Leadership)), or [`watch`](crate::Campaign::watch)
    /// the election without campaigning. At most one process leads at a time, each
    /// leader's epoch is larger than every earlier one's, and a leader that dies is
    /// replaced when its lease ends. Refused with a [`LockError::Config`] by Redlock,
    /// which cannot issue epochs. See [`Campaign`](crate::Campaign).
    ///
    /// The election `name` is the lock `name` (same keys, same queue): do not also
    /// [`lock`](Self::lock) that name for something else, or its holder leads.
    pub fn leader(&self, name: impl Into<String>) -> crate::Campaign {
        crate::Campaign::new(self.clone(), name.into())
    }

    /// Whether anyone holds the lock `name` (one round trip; does not take it).
    pub async fn is_locked(&self, name: &str) -> Result<bool, LockError> {
        let keys = LockKeys::new(self.prefix(), name)?;
        Ok(self.inner.backend.remaining(&keys).await? != Remaining::Free)
    }

    /// How long the lock `name` stays held unless renewed: `None` when it is free (or held
    /// by a key without expiry, which this crate never writes).
    pub async fn remaining(&self, name: &str) -> Result<Option<Duration>, LockError> {
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

    /// Waits until the releases that dropped guards (and the clean-ups that cancelled
    /// requests, and on Redlock the slower servers' parts of operations that returned
    /// without them) started in the background have finished, at most twice the command
    /// timeout; returns whether they all did. It waits for those of this locker and its
    /// clones only.
    ///
    /// A guard's `Drop` cannot wait: it spawns the release on the current runtime. A
    /// short-lived program (a job in `#[tokio::main]`) whose runtime ends right after
    /// dropping a guard would leave the key to expire with its TTL; call this before
    /// returning from `main` instead.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_runtime::LockError> {
    /// let locker = lock_runtime::Locker::memory();
    /// let guard = locker.lock("nightly").acquire().await?;
    /// // ... the job ...
    /// drop(guard); // releases in the background
    /// assert!(locker.flush().await);
    /// assert!(!locker.is_locked("nightly").await?);
    /// # Ok(()) }
    /// ```
    pub async fn flush(&self) -> bool {
        let limit = self.inner.backend.command_timeout().saturating_mul(2);
        self.inner.backend.tracker().settled(limit).await
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

    pub(crate) fn backend(&self) -> &Arc<Backend> {
        &self.inner.backend
    }

    pub(crate) fn renewer(&self) -> &Renewer {
        &self.inner.renewer
    }

    pub(crate) fn owners(&self) -> &Owners {
        &self.inner.owners
    }
}
