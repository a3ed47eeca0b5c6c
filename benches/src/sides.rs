//! The lock libraries measured side by side, behind one interface: ours (`lock_runtime`,
//! public API only), the peer, `rslock` (the most used Redis lock crate), and the floor
//! both stand on, redis-rs alone sending a lock's two commands, on the same private
//! redis-server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lock_runtime::{LockGuard, Locker};

/// The TTL of every rslock lock: ours' default, which our requests here keep.
const PEER_TTL: Duration = Duration::from_secs(30);

/// How long one of ours waits for a held lock (`.wait(..)`).
const OUR_WAIT: Duration = Duration::from_secs(30);

/// rslock with a short retry delay: its `lock` sleeps a random whole number of
/// milliseconds in `0..delay` between tries, so 2 ms means 0 or 1 ms.
const FAST_RETRY_DELAY: Duration = Duration::from_millis(2);

/// Tries per `lock` call for the fast variant; its `acquire` loops over `lock` anyway, so
/// this only keeps it from starting over (and drawing a new owner value) every few tries.
const FAST_RETRY_COUNT: u32 = 100_000;

/// One measured configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Side {
    /// lock_runtime with its defaults; waiting with `.wait(..)`.
    Ours,
    /// rslock with its default retry settings (3 tries per `lock`, random delay up to
    /// 200 ms); waiting with `acquire`, which loops until it gets the lock.
    Rslock,
    /// rslock with a 2 ms retry delay and enough tries not to fail.
    RslockFast,
    /// No library: redis-rs alone on one multiplexed connection, `SET NX PX` and a
    /// compare-and-delete script (EVALSHA), the fewest commands an owner-checked lock
    /// needs on Redis 7. Never waits: the floor of the latency and throughput workloads.
    Bare,
}

impl Side {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Ours => "ours",
            Self::Rslock => "rslock",
            Self::RslockFast => "rslock 2ms",
            Self::Bare => "redis-rs alone",
        }
    }

    /// Whether a figure named `metric` can have been measured when only this side ran:
    /// it names no other side.
    pub(crate) fn measured(self, metric: &str) -> bool {
        const SIDES: [Side; 4] = [Side::Ours, Side::Rslock, Side::RslockFast, Side::Bare];
        SIDES.iter().filter(|side| **side != self).all(|side| {
            // "rslock 2ms" contains "rslock": look for that one beside this one's label.
            let named = if self.label().contains(side.label()) {
                metric.replace(self.label(), "").contains(side.label())
            } else {
                metric.contains(side.label())
            };
            !named
        })
    }

    /// A short tag for key names.
    fn tag(self) -> &'static str {
        match self {
            Self::Ours => "ours",
            Self::Rslock => "peer",
            Self::RslockFast => "peer2ms",
            Self::Bare => "bare",
        }
    }

    /// Key names for this side: `bench:{tag}:{what}`.
    pub(crate) fn key(self, what: impl std::fmt::Display) -> String {
        format!("bench:{}:{what}", self.tag())
    }

    /// A client of its own (its own connections), connected and warmed up (scripts loaded).
    pub(crate) async fn client(self, url: &str) -> Client {
        let client = match self {
            Self::Ours => {
                let locker = Locker::redis(url).expect("a valid URL");
                locker.ping().await.expect("ping");
                Client::Ours(locker)
            }
            Self::Rslock => Client::Rslock(rslock::LockManager::new(vec![url])),
            Self::RslockFast => {
                let mut manager = rslock::LockManager::new(vec![url]);
                manager.set_retry(FAST_RETRY_COUNT, FAST_RETRY_DELAY);
                Client::Rslock(manager)
            }
            Self::Bare => {
                let client = redis::Client::open(url).expect("a valid URL");
                let connection = client
                    .get_multiplexed_async_connection()
                    .await
                    .expect("connect (redis-rs alone)");
                Client::Bare(BareConnection::Single(connection), Arc::default())
            }
        };
        for index in 0..3 {
            let guard = client
                .acquire(self.key(format!("warmup:{index}")), false)
                .await;
            guard.release().await;
        }
        client
    }
}

/// A client of one side.
#[derive(Clone)]
pub(crate) enum Client {
    Ours(Locker),
    Rslock(rslock::LockManager),
    /// redis-rs alone: its connection, and a counter for owner values.
    Bare(BareConnection, Arc<AtomicU64>),
}

/// The connection of redis-rs alone: to one server, or to a cluster.
#[derive(Clone)]
pub(crate) enum BareConnection {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for BareConnection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

/// A held lock of one side.
pub(crate) enum Guard {
    Ours(LockGuard),
    Rslock(rslock::Lock),
    Bare {
        connection: BareConnection,
        key: String,
        owner: String,
    },
}

/// The compare-and-delete of redis-rs alone (rslock's unlock script, word for word in
/// effect).
static BARE_RELEASE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end \
         return 0",
    )
});

impl Client {
    /// Acquires `name`. Without `wait`, a held lock is an error (ours: no waiting; rslock:
    /// `lock`, its configured tries); with it, ours waits with `.wait(..)` and rslock
    /// `acquire`s (tries until it gets the lock). Panics on any error: the workloads are
    /// built so that it cannot happen.
    pub(crate) async fn acquire(&self, name: String, wait: bool) -> Guard {
        match self {
            Client::Ours(locker) => {
                let request = locker.lock(name);
                let request = if wait {
                    request.wait(OUR_WAIT)
                } else {
                    request
                };
                Guard::Ours(request.acquire().await.expect("acquire (ours)"))
            }
            Client::Rslock(manager) if wait => Guard::Rslock(
                manager
                    .acquire(name.as_str(), PEER_TTL)
                    .await
                    .expect("acquire (rslock)")
                    .lock,
            ),
            Client::Rslock(manager) => Guard::Rslock(
                manager
                    .lock(name.as_str(), PEER_TTL)
                    .await
                    .expect("lock (rslock)"),
            ),
            Client::Bare(..) if wait => unreachable!("redis-rs alone never waits"),
            Client::Bare(connection, owners) => {
                let mut connection = connection.clone();
                let owner = format!("o{}", owners.fetch_add(1, Ordering::Relaxed));
                let set: Option<String> = redis::cmd("SET")
                    .arg(&name)
                    .arg(&owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(PEER_TTL.as_millis() as u64)
                    .query_async(&mut connection)
                    .await
                    .expect("SET (redis-rs alone)");
                assert!(set.is_some(), "redis-rs alone found {name} held");
                Guard::Bare {
                    connection,
                    key: name,
                    owner,
                }
            }
        }
    }
}

impl Guard {
    /// Releases the lock; whether it was still held (rslock does not say: always true).
    pub(crate) async fn release(self) -> bool {
        match self {
            Guard::Ours(guard) => guard.release().await.expect("release (ours)"),
            Guard::Rslock(lock) => {
                lock.release().await;
                true
            }
            Guard::Bare {
                mut connection,
                key,
                owner,
            } => {
                let deleted: i64 = BARE_RELEASE
                    .key(&key)
                    .arg(&owner)
                    .invoke_async(&mut connection)
                    .await
                    .expect("compare-and-delete (redis-rs alone)");
                deleted == 1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Side;

    #[test]
    fn only_one_side_keeps_the_figures_that_name_no_other() {
        let kept = |side: Side| {
            [
                "ours acquire+release p50",
                "ours / rslock p50",
                "rslock 2ms sections/s",
                "rslock sections/s",
                "redis-rs alone 64 tasks, pairs/s",
                "floor: FIFO baton in-process, no lock, sections/s",
            ]
            .into_iter()
            .filter(|metric| side.measured(metric))
            .collect::<Vec<_>>()
        };
        let floor = "floor: FIFO baton in-process, no lock, sections/s";
        assert_eq!(kept(Side::Ours), ["ours acquire+release p50", floor]);
        assert_eq!(kept(Side::Rslock), ["rslock sections/s", floor]);
        assert_eq!(kept(Side::RslockFast), ["rslock 2ms sections/s", floor]);
        assert_eq!(
            kept(Side::Bare),
            ["redis-rs alone 64 tasks, pairs/s", floor]
        );
    }
}
