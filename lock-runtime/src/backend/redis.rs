//! Locks on one Redis server or a Redis Cluster: `SET NX PX` for a plain acquire, the
//! queue protocol ([`crate::queue`]) for waiters and releases, and the shared per-server
//! operations.
//!
//! On a Cluster every call touches one lock, and all of a lock's keys and its channel
//! share a slot (the whole lock name is the hash tag), so each script runs on the lock's
//! master; hand-offs go out on sharded pub/sub in that slot (one shard hears them, never
//! the whole cluster); renewals are batched per slot.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use super::{Attempt, ExtendMode, Listener, ReleaseReport, Remaining, Renewal, Request, ops};
use crate::driver::Server;
pub(crate) use crate::driver::Timeouts;
use crate::driver::Tls;
use crate::key::LockKeys;
use crate::queue::{self, Inbox, QueueSpec, Reply};
use crate::runtime::Tracker;
use crate::scripts::{ACQUIRE_FENCED, Eval};
use crate::{LockError, millis};

/// Locks on one Redis server or a Redis Cluster.
#[derive(Debug)]
pub(crate) struct RedisBackend {
    server: Server,
    cluster: bool,
    /// This locker's background work, for `Locker::flush`.
    pub(super) tracker: Arc<Tracker>,
}

/// Slots renewed at once on a Cluster (each slot's locks in one script call).
const SLOTS_AT_ONCE: usize = 64;

impl RedisBackend {
    /// Locks on the server of `client`. Does not connect.
    pub(crate) fn single(client: redis::Client, prefix: &str, timeouts: Timeouts) -> Self {
        Self {
            server: Server::single(client, prefix, timeouts),
            cluster: false,
            tracker: Arc::default(),
        }
    }

    /// Locks on the master of the sentinels at `sentinels`. Does not connect.
    pub(crate) fn sentinel(
        master: &str,
        sentinels: &[redis::ConnectionInfo],
        tls: &Tls,
        prefix: &str,
        timeouts: Timeouts,
    ) -> Result<Self, redis::RedisError> {
        Ok(Self {
            server: Server::sentinel(master, sentinels, tls, prefix, timeouts)?,
            cluster: false,
            tracker: Arc::default(),
        })
    }

    /// Locks on the server of the program's own connection manager.
    pub(crate) fn shared(
        manager: redis::aio::ConnectionManager,
        prefix: &str,
        timeouts: Timeouts,
    ) -> Self {
        Self {
            server: Server::shared(manager, prefix, timeouts),
            cluster: false,
            tracker: Arc::default(),
        }
    }

    /// Locks on the Redis Cluster reached through `nodes`. Does not connect.
    pub(crate) fn cluster(
        nodes: Vec<redis::ConnectionInfo>,
        tls: Tls,
        prefix: &str,
        timeouts: Timeouts,
    ) -> Self {
        Self {
            server: Server::cluster(nodes, tls, prefix, timeouts),
            cluster: true,
            tracker: Arc::default(),
        }
    }

    pub(crate) fn command_timeout(&self) -> Duration {
        self.server.timeouts().command
    }

    pub(crate) async fn acquire(&self, request: Request<'_>) -> Result<Attempt, LockError> {
        let Request {
            keys,
            token,
            ttl,
            fencing,
        } = request;
        if keys.permits().is_some() {
            let invocation = queue::acquire_permit(keys, token, (ttl, fencing));
            let reply: Vec<i64> = self.server.eval(&invocation, keys.lock_name()).await?;
            return attempt(&reply, fencing, keys);
        }
        if fencing {
            let mut invocation = Eval::new(&ACQUIRE_FENCED, 2);
            invocation
                .key(keys.key())
                .key(keys.fence())
                .arg(token)
                .arg(millis::expiry(ttl));
            let reply: Vec<i64> = self.server.eval(&invocation, keys.lock_name()).await?;
            return attempt(&reply, true, keys);
        }
        // The common case needs no script. The holder's TTL is not asked for: a waiter's
        // next (queued) attempt reports it, and a failing request asks for it.
        let mut set = redis::Cmd::with_capacity(6, 64 + keys.key().len() + token.len());
        set.arg("SET")
            .arg(keys.key())
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(millis::expiry(ttl));
        let set: redis::Value = self.server.query(&set, keys.lock_name()).await?;
        Ok(if set == redis::Value::Nil {
            Attempt::Busy {
                remaining: None,
                at_us: None,
            }
        } else {
            Attempt::Won { fence: None }
        })
    }

    pub(crate) async fn listen(&self, keys: &LockKeys, token: &str) -> Result<Listener, LockError> {
        let name = keys.lock_name();
        if self.cluster {
            return Ok(Listener {
                registration: self
                    .server
                    .listen_on(token, &keys.channel().to_string(), name)
                    .await?,
                inbox: Inbox::Sharded,
            });
        }
        Ok(Listener {
            registration: self.server.listen(token, name).await?,
            inbox: Inbox::Channel(self.server.inbox().clone()),
        })
    }

    pub(crate) async fn listen_to(
        &self,
        keys: &LockKeys,
        channel: &str,
        token: &str,
    ) -> Result<crate::notify::Registration, LockError> {
        if self.server.is_shared() {
            return Err(LockError::Config(format!(
                "leader `{}`: a watch needs notifications, which the program's own \
                 connection (Locker::from_connection) delivers to the program, not to the \
                 locker; watch through a locker that opens its own connections \
                 (Locker::redis, Locker::from_client)",
                keys.lock_name()
            )));
        }
        self.server
            .listen_on(token, channel, keys.lock_name())
            .await
    }

    pub(crate) async fn keep_listening(
        &self,
        keys: &LockKeys,
        channel: &str,
    ) -> Result<(), LockError> {
        self.server.keep_subscribed(channel, keys.lock_name()).await
    }

    /// `PUBLISH` (one server) or `SPUBLISH` (Cluster: the channel is in the lock's slot,
    /// so one shard hears it).
    pub(crate) async fn announce(
        &self,
        keys: &LockKeys,
        channel: &str,
        announcement: crate::notify::Announcement,
    ) -> Result<(), LockError> {
        let mut publish = redis::cmd(if self.cluster { "SPUBLISH" } else { "PUBLISH" });
        publish.arg(channel).arg(announcement.payload());
        let _: i64 = self.server.query(&publish, keys.lock_name()).await?;
        Ok(())
    }

    pub(crate) async fn acquire_queued(
        &self,
        request: Request<'_>,
        spec: &QueueSpec,
        listener: &Listener,
    ) -> Result<Attempt, LockError> {
        let Request {
            keys,
            token,
            ttl,
            fencing,
        } = request;
        let invocation = queue::acquire_queued(keys, token, (ttl, fencing), spec, &listener.inbox);
        let name = request.keys.lock_name();
        let reply: Vec<i64> = self.server.eval(&invocation, name).await?;
        attempt(&reply, request.fencing, request.keys)
    }

    pub(crate) async fn release(
        &self,
        keys: &LockKeys,
        token: &str,
    ) -> Result<ReleaseReport, LockError> {
        let released: i64 = self
            .server
            .eval(&queue::release(keys, token), keys.lock_name())
            .await?;
        Ok(ReleaseReport::single(released == 1))
    }

    pub(crate) async fn extend(
        &self,
        keys: &LockKeys,
        token: &str,
        by: Duration,
        mode: ExtendMode,
    ) -> Result<Option<Duration>, LockError> {
        ops::extend(&self.server, keys, token, by, mode).await
    }

    pub(crate) async fn extend_many(
        &self,
        batch: &[Renewal<'_>],
    ) -> Vec<Result<Option<Duration>, LockError>> {
        if !self.cluster {
            return ops::extend_many(&self.server, batch).await;
        }
        // One script call per slot, a few slots at a time.
        let mut by_slot: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        for (index, renewal) in batch.iter().enumerate() {
            by_slot.entry(renewal.keys.slot()).or_default().push(index);
        }
        let groups: Vec<Vec<usize>> = by_slot.into_values().collect();
        let mut outcomes: Vec<Option<Result<Option<Duration>, LockError>>> =
            (0..batch.len()).map(|_| None).collect();
        for wave in groups.chunks(SLOTS_AT_ONCE) {
            let answers = join_all(wave.iter().map(|group| {
                let renewals: Vec<Renewal<'_>> = group.iter().map(|&index| batch[index]).collect();
                async move { ops::extend_many(&self.server, &renewals).await }
            }))
            .await;
            for (group, answers) in wave.iter().zip(answers) {
                for (&index, answer) in group.iter().zip(answers) {
                    outcomes[index] = Some(answer);
                }
            }
        }
        outcomes
            .into_iter()
            .map(|outcome| outcome.unwrap_or(Ok(None)))
            .collect()
    }

    /// Renews `token`'s lock for `ttl` (an owner-checked write) on the durable connection,
    /// then waits up to `wait` for `replicas` replicas to have every write so far (the
    /// lock's, whoever made it, comes before this one in the replication stream). Returns
    /// the lock's remaining time (`None`: not the owner's) and how many replicas confirmed.
    pub(crate) async fn replicate(
        &self,
        keys: &LockKeys,
        token: &str,
        ttl: Duration,
        replicas: u32,
        wait: Duration,
    ) -> Result<(Option<Duration>, u32), LockError> {
        let mut connection = self.server.durable_connection(wait).await?;
        let name = keys.lock_name();
        let left: u64 = ops::extend_call(keys, token, ttl, ExtendMode::Renew)
            .invoke(&mut connection)
            .await
            .map_err(|source| self.server.error(name, source))?;
        if left == 0 {
            return Ok((None, 0));
        }
        let acknowledged = self
            .server
            .wait_for_replicas(&mut connection, keys.slot(), replicas, wait, name)
            .await?;
        Ok((Some(millis::reported(left)), acknowledged))
    }

    pub(crate) async fn holder(
        &self,
        keys: &LockKeys,
        token: &str,
    ) -> Result<Option<String>, LockError> {
        ops::holder(&self.server, keys, token).await
    }

    pub(crate) async fn remaining(&self, keys: &LockKeys) -> Result<Remaining, LockError> {
        ops::remaining(&self.server, keys).await
    }

    pub(crate) async fn ping(&self) -> Result<(), LockError> {
        ops::ping(&self.server).await
    }
}

/// A fenced or queued attempt's reply as an [`Attempt`].
fn attempt(reply: &[i64], fencing: bool, keys: &LockKeys) -> Result<Attempt, LockError> {
    match queue::attempt_reply(reply) {
        Some(Reply::Won { fence }) => Ok(Attempt::Won {
            fence: fencing.then_some(fence),
        }),
        Some(Reply::Busy { pttl, at_us }) => Ok(Attempt::Busy {
            remaining: Remaining::from_pttl(pttl).holder_left(),
            at_us,
        }),
        None => Err(super::unexpected_reply(keys, reply)),
    }
}
