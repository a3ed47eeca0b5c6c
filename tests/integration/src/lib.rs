//! Support for the integration tests: fixtures that run a behaviour against a private
//! `redis-server`, a private Redis Cluster or the memory backend, and a non-atomic counter
//! to detect overlapping critical sections.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lock_runtime::Locker;

pub mod proxy;
use lock_runtime::testing::{RedisCluster, RedisServer, ValkeyServer};

/// A locker on a fresh backend; keeps its `redis-server` (if any) alive and prints its log
/// when the test panics.
pub struct Fixture {
    /// The locker under test.
    pub locker: Locker,
    /// The private server behind it (`None` for the memory backend and a cluster).
    pub server: Option<RedisServer>,
    /// The private cluster behind it, for the cluster backend.
    pub cluster: Option<RedisCluster>,
}

impl Fixture {
    /// A locker on a new private `redis-server`.
    pub fn redis() -> Self {
        let server = RedisServer::start().expect("start redis-server");
        let locker = Locker::redis(&server.url()).expect("locker");
        Self {
            locker,
            server: Some(server),
            cluster: None,
        }
    }

    /// A locker on a new private `valkey-server`, when `LOCK_TEST_VALKEY_BIN` names one
    /// (`None` otherwise; the caller says the test is skipped).
    pub fn valkey() -> Option<Self> {
        let server = match ValkeyServer::start() {
            Ok(server) => server.into_inner(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
            Err(error) => panic!("start valkey-server: {error}"),
        };
        let locker = Locker::redis(&server.url()).expect("locker");
        Some(Self {
            locker,
            server: Some(server),
            cluster: None,
        })
    }

    /// A locker on a new private Redis Cluster (3 masters, 3 replicas).
    pub fn cluster() -> Self {
        let cluster = RedisCluster::start().expect("start a redis cluster");
        let locker = Locker::cluster(cluster.urls()).expect("locker");
        Self {
            locker,
            server: None,
            cluster: Some(cluster),
        }
    }

    /// A locker on a new memory backend.
    pub fn memory() -> Self {
        Self {
            locker: Locker::memory(),
            server: None,
            cluster: None,
        }
    }

    /// A second, independent client of the same store (another "instance": its own
    /// connections). The memory backend has one store per locker, so it returns a clone.
    pub fn another_locker(&self) -> Locker {
        match (&self.server, &self.cluster) {
            (Some(server), _) => Locker::redis(&server.url()).expect("locker"),
            (None, Some(cluster)) => Locker::cluster(cluster.urls()).expect("locker"),
            (None, None) => self.locker.clone(),
        }
    }

    /// The server's URL (panics unless the fixture is one server).
    pub fn url(&self) -> String {
        self.server.as_ref().expect("a Redis fixture").url()
    }

    /// Takes the lock `name` in another task: another owner than the calling task, as
    /// another instance would be (the calling task asking for a lock it holds would be
    /// re-entry: `LockError::Reentrant`).
    pub async fn hold_elsewhere(&self, name: &str) -> lock_runtime::LockGuard {
        tokio::spawn(self.locker.lock(name).acquire())
            .await
            .expect("the holding task")
            .expect("the lock is free")
    }

    /// Takes a permit of the semaphore `name` (`permits` of them) in another task.
    pub async fn hold_elsewhere_permit(&self, name: &str, permits: u32) -> lock_runtime::LockGuard {
        tokio::spawn(self.locker.semaphore(name, permits).acquire())
            .await
            .expect("the holding task")
            .expect("a free permit")
    }

    /// Every key stored on the server (on each node of a cluster), sorted; `None` for the
    /// memory backend. For checks that nothing is left behind.
    pub async fn stored_keys(&self) -> Option<Vec<String>> {
        let urls = match (&self.server, &self.cluster) {
            (Some(server), _) => vec![server.url()],
            (None, Some(cluster)) => cluster.urls(),
            (None, None) => return None,
        };
        let mut keys = Vec::new();
        for url in urls {
            let mut connection = raw_connection(&url).await;
            let found: Vec<String> = redis::cmd("KEYS")
                .arg("*")
                .query_async(&mut connection)
                .await
                .expect("KEYS");
            keys.extend(found);
        }
        keys.sort();
        keys.dedup();
        Some(keys)
    }

    /// A shared counter in the same store, for mutual-exclusion checks.
    pub async fn counter(&self, name: &str) -> Counter {
        match (&self.server, &self.cluster) {
            (Some(server), _) => Counter::redis(&server.url(), name).await,
            (None, Some(cluster)) => Counter::cluster(&cluster.urls(), name).await,
            (None, None) => Counter::Memory(Arc::new(AtomicU64::new(0))),
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        if let Some(server) = &self.server {
            eprintln!("--- redis-server log ---\n{}", server.log());
        }
        if let Some(cluster) = &self.cluster {
            eprintln!("--- redis cluster logs ---\n{}", cluster.logs());
        }
    }
}

/// A counter incremented by a deliberately non-atomic read, pause, write: two holders in
/// the critical section at once lose an increment.
#[derive(Clone)]
pub enum Counter {
    /// `GET` then `SET` on a Redis key, over its own connection.
    Redis(redis::aio::MultiplexedConnection, String),
    /// The same on a Redis Cluster.
    Cluster(redis::cluster_async::ClusterConnection, String),
    /// A load then a store.
    Memory(Arc<AtomicU64>),
}

impl Counter {
    /// A counter at `key` on the server at `url`, starting at 0.
    pub async fn redis(url: &str, key: &str) -> Self {
        let client = redis::Client::open(url).expect("client");
        let connection = client
            .get_multiplexed_async_connection()
            .await
            .expect("counter connection");
        Self::Redis(connection, key.to_owned())
    }

    /// A counter at `key` on the cluster reached through `urls`, starting at 0.
    pub async fn cluster(urls: &[String], key: &str) -> Self {
        let client = redis::cluster::ClusterClient::new(urls.to_vec()).expect("cluster client");
        let connection = client
            .get_async_connection()
            .await
            .expect("counter connection");
        Self::Cluster(connection, key.to_owned())
    }

    /// Reads, yields to other tasks, writes the value plus one.
    pub async fn unsafe_increment(&mut self) {
        match self {
            Self::Redis(connection, key) => increment(connection, key).await,
            Self::Cluster(connection, key) => increment(connection, key).await,
            Self::Memory(value) => {
                let read = value.load(Ordering::SeqCst);
                tokio::task::yield_now().await;
                value.store(read + 1, Ordering::SeqCst);
            }
        }
    }

    /// The current value.
    pub async fn get(&mut self) -> u64 {
        match self {
            Self::Redis(connection, key) => read(connection, key).await,
            Self::Cluster(connection, key) => read(connection, key).await,
            Self::Memory(value) => value.load(Ordering::SeqCst),
        }
    }
}

async fn increment(connection: &mut impl redis::aio::ConnectionLike, key: &str) {
    let read = read(connection, key).await;
    tokio::task::yield_now().await;
    let () = redis::cmd("SET")
        .arg(key)
        .arg(read + 1)
        .query_async(connection)
        .await
        .expect("SET");
}

async fn read(connection: &mut impl redis::aio::ConnectionLike, key: &str) -> u64 {
    let value: Option<u64> = redis::cmd("GET")
        .arg(key)
        .query_async(connection)
        .await
        .expect("GET");
    value.unwrap_or(0)
}

/// Polls `condition` every 10 ms until it holds or `limit` passes; returns whether it held.
pub async fn eventually<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if condition().await {
            return true;
        }
        if started.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (up to 5 s) until nobody holds the lock `name`; returns whether that happened.
pub async fn until_free(locker: &Locker, name: &str) -> bool {
    eventually(Duration::from_secs(5), || async {
        !locker.is_locked(name).await.unwrap()
    })
    .await
}

/// `command` on a new connection to the server at `url` (panics on an error).
pub async fn query<T: redis::FromRedisValue>(url: &str, command: &redis::Cmd) -> T {
    command
        .query_async(&mut raw_connection(url).await)
        .await
        .unwrap()
}

/// A plain connection to the server at `url`, for touching keys from outside.
pub async fn raw_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection")
}

/// Waits (up to 1 s) until `replicas` replicas have every write made so far on
/// `connection` (`WAIT`); returns how many have, for a failover test that must not lose
/// them.
pub async fn replicated(connection: &mut redis::aio::MultiplexedConnection, replicas: u32) -> u32 {
    redis::cmd("WAIT")
        .arg(replicas)
        .arg(1000)
        .query_async(connection)
        .await
        .expect("WAIT")
}

/// Runs each named `async fn(Fixture)` of the calling test file on every backend: a
/// private `redis-server` (`on_redis::name`), a private Redis Cluster (`on_cluster`), a
/// private `valkey-server` when `LOCK_TEST_VALKEY_BIN` names one (`on_valkey`; otherwise
/// each says it is skipped) and the memory backend (`on_memory`).
#[macro_export]
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod on_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Fixture::redis()).await;
                }
            )*
        }
        mod on_cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Fixture::cluster()).await;
                }
            )*
        }
        mod on_valkey {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(fixture) = $crate::Fixture::valkey() else {
                        eprintln!("skipped: LOCK_TEST_VALKEY_BIN names no valkey-server");
                        return;
                    };
                    super::$name(fixture).await;
                }
            )*
        }
        mod on_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Fixture::memory()).await;
                }
            )*
        }
    };
}

/// A child process that is killed (SIGKILL) and reaped when dropped, so a failing test
/// leaves no process behind.
pub struct KillOnDrop(pub std::process::Child);

impl KillOnDrop {
    /// Reads one line of the child's piped stdout (blocking, on a blocking thread).
    pub async fn read_line(&mut self) -> String {
        let stdout = self.0.stdout.take().expect("stdout piped");
        let (line, stdout) = tokio::task::spawn_blocking(move || {
            let mut reader = std::io::BufReader::new(stdout);
            let mut line = String::new();
            std::io::BufRead::read_line(&mut reader, &mut line).expect("read stdout");
            (line, reader.into_inner())
        })
        .await
        .expect("reader thread");
        self.0.stdout = Some(stdout);
        line
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
