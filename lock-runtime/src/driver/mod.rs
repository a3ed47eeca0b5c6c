//! One Redis server (or one Redis Cluster): its connections, its notifications, and
//! what its errors mean.
//!
//! # Behavior
//!
//! - Per tokio runtime that uses it, one connection for commands, opened by the first
//!   command: a multiplexed, reconnecting `ConnectionManager` on one server, a
//!   `ClusterConnection` on a Cluster. Concurrent commands are pipelined on it.
//! - A connection belongs to the runtime that opened it (redis-rs runs its reader and
//!   reconnection there), so one runtime ending never breaks another's commands or
//!   notifications. Connections of runtimes that shut down are dropped on the next use.
//! - Notifications, one server: the command connection speaks RESP3, so push messages
//!   share it. Releases tell this server's waiters on its *inbox*, a channel subscribed
//!   once per connection (and again automatically after a reconnect); frees on a lock's
//!   own channel (Redlock) are subscribed while some waiter listens.
//! - Notifications, Cluster: a second cluster connection per runtime carries only
//!   sharded subscriptions (SSUBSCRIBE to the lock's channel, in the lock's slot, while
//!   some waiter listens); commands never share it, because an unsolicited `sunsubscribe`
//!   (the slot moved, its master failed over) would be taken as a command's reply. Such a
//!   dropped subscription is renewed at once and its waiters try again.
//! - When a connection drops, every waiter is told to try again (it may have missed a
//!   message). A command waits for a reconnection at most the connect timeout (one
//!   attempt), then its own command timeout. A reconnection refused for its credentials
//!   (or while the server loads its data) is not retried by redis-rs: the next command
//!   opens a new connection instead.
//! - Errors are classified once, here: unreachable is [`LockError::Connect`], refused
//!   credentials or permissions [`LockError::Auth`], the rest [`LockError::Backend`].

mod connect;
mod push;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use redis::RedisError;
use redis::cluster_async::ClusterConnection;
use tokio::sync::{OnceCell, mpsc};

use self::connect::{Conn, Connector};
pub(crate) use self::connect::{Tls, tuned};
use self::push::Dispatch;
use crate::LockError;
use crate::notify::{Notifications, OnLastLeave, Registration};
use crate::runtime::RuntimeAlive;

/// Timeouts of a server connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// Bound on establishing a connection (each attempt).
    pub(crate) connect: Duration,
    /// Bound on one command's round trip.
    pub(crate) command: Duration,
}

/// One Redis server, or one Redis Cluster.
pub(crate) struct Server {
    connector: Connector,
    address: String,
    timeouts: Timeouts,
    notifications: Arc<Notifications>,
    /// `<prefix>inbox:<uuid>` (under the key prefix, so one ACL pattern covers the keys and
    /// channels): where releases tell this server's waiters (one server).
    inbox: Arc<str>,
    /// The connections of each runtime that uses this server.
    lives: Arc<Mutex<Vec<Arc<Live>>>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("address", &self.address)
            .field("timeouts", &self.timeouts)
            .field("waiters", &self.notifications.len())
            .finish_non_exhaustive()
    }
}

/// The connections of one runtime.
struct Live {
    runtime_id: tokio::runtime::Id,
    runtime: RuntimeAlive,
    /// Where this connection's background work runs (its runtime, from anywhere).
    handle: tokio::runtime::Handle,
    commands: Conn,
    /// One server: the client the connections go through (the current master, with
    /// Sentinel).
    client: Option<redis::Client>,
    /// The connection of durable writes (`WAIT` blocks its connection: never the shared
    /// one).
    durable: OnceCell<Conn>,
    /// Cluster: the connection that carries only sharded subscriptions.
    shards: OnceCell<ClusterConnection>,
    /// Set once the inbox is subscribed on this runtime's connection (one server).
    inbox: OnceCell<()>,
    /// The channels subscribed on this runtime's connections. Held across a subscribe or
    /// unsubscribe, so the two never race on one channel.
    channels: tokio::sync::Mutex<HashSet<String>>,
    /// Set once the connection answered (Redlock's per-server budgets then exclude
    /// connecting).
    ready: OnceCell<()>,
}

impl Live {
    /// Unsubscribes `channel` if no waiter listens on it any more (checked under the
    /// subscription lock, so a waiter that arrived meanwhile keeps it).
    async fn unsubscribe(&self, channel: &str, notifications: &Notifications) {
        let mut channels = self.channels.lock().await;
        if notifications.listeners(channel) > 0 || !channels.remove(channel) {
            return;
        }
        let unsubscribed = match (&self.commands, self.shards.get()) {
            (Conn::Single(manager), _) => manager.clone().unsubscribe(channel).await,
            (Conn::Cluster(_), Some(shards)) => shards.clone().sunsubscribe(channel).await,
            (Conn::Cluster(_), None) => Ok(()),
        };
        if let Err(error) = unsubscribed {
            tracing::debug!(name: "lock.unsubscribe_failed", target: crate::observe::TARGET, %channel, %error, "unsubscribing failed; the channel stays subscribed");
        }
    }
}

impl Server {
    /// One server, reached through `client` (RESP3). Does not connect.
    pub(crate) fn single(client: redis::Client, prefix: &str, timeouts: Timeouts) -> Self {
        let address = client.get_connection_info().addr().to_string();
        Self::new(
            Connector::Single(Box::new(client)),
            address,
            prefix,
            timeouts,
        )
    }

    /// The master `master` of the sentinels at `sentinels`. Does not connect.
    pub(crate) fn sentinel(
        master: &str,
        sentinels: &[redis::ConnectionInfo],
        tls: &Tls,
        prefix: &str,
        timeouts: Timeouts,
    ) -> Result<Self, RedisError> {
        let sentinel = connect::Sentinel::new(master, sentinels, tls)?;
        let address = format!("sentinel master {}", sentinel.name());
        Ok(Self::new(
            Connector::Sentinel(Box::new(sentinel)),
            address,
            prefix,
            timeouts,
        ))
    }

    /// One server through the program's own connection manager.
    pub(crate) fn shared(
        manager: redis::aio::ConnectionManager,
        prefix: &str,
        timeouts: Timeouts,
    ) -> Self {
        Self::new(
            Connector::Shared(Box::new(manager)),
            "the program's connection".into(),
            prefix,
            timeouts,
        )
    }

    /// A Redis Cluster, reached through any of `nodes`. Does not connect.
    pub(crate) fn cluster(
        nodes: Vec<redis::ConnectionInfo>,
        tls: Tls,
        prefix: &str,
        timeouts: Timeouts,
    ) -> Self {
        let address = nodes
            .iter()
            .map(|node| node.addr().to_string())
            .collect::<Vec<_>>()
            .join(",");
        Self::new(
            Connector::Cluster(nodes, tls),
            format!("cluster {address}"),
            prefix,
            timeouts,
        )
    }

    fn new(connector: Connector, address: String, prefix: &str, timeouts: Timeouts) -> Self {
        Self {
            connector,
            address,
            timeouts,
            notifications: Arc::default(),
            inbox: format!("{prefix}inbox:{}", uuid::Uuid::new_v4().simple()).into(),
            lives: Arc::default(),
        }
    }

    /// `host:port` (or the cluster's nodes), without credentials.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    pub(crate) fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// The channel releases announce hand-offs to this server's waiters on.
    pub(crate) fn inbox(&self) -> &Arc<str> {
        &self.inbox
    }

    fn dispatch(&self, dropped: Option<mpsc::UnboundedSender<String>>) -> Dispatch {
        Dispatch {
            notifications: self.notifications.clone(),
            inbox: self.inbox.clone(),
            dropped,
        }
    }

    /// The connections of the current runtime, opened on first use.
    async fn live(&self) -> Result<Arc<Live>, LockError> {
        let runtime_id = tokio::runtime::Handle::try_current()
            .map_err(|_| LockError::Config("lock operations need a tokio runtime".into()))?
            .id();
        // A runtime's id may be reused once it ended: only a live runtime's connection.
        let find = |lives: &[Arc<Live>]| {
            lives
                .iter()
                .find(|live| live.runtime_id == runtime_id && live.runtime.is_alive())
                .cloned()
        };
        if let Some(live) = find(&self.lives()) {
            return Ok(live);
        }
        let runtime = RuntimeAlive::current()
            .ok_or_else(|| LockError::Config("lock operations need a tokio runtime".into()))?;
        // Boxed: connecting is rare, and its futures (TLS, Cluster, Sentinel) are deep
        // enough to overflow the layout of every future that awaits a command.
        let (commands, client) = erased(self.connect()).await?;
        let live = {
            let mut lives = self.lives();
            if let Some(live) = find(&lives) {
                return Ok(live); // opened by a concurrent first command
            }
            lives.retain(|live| live.runtime.is_alive());
            let live = Arc::new(Live {
                runtime_id,
                runtime,
                handle: tokio::runtime::Handle::current(),
                commands,
                client,
                durable: OnceCell::new(),
                shards: OnceCell::new(),
                inbox: OnceCell::new(),
                channels: tokio::sync::Mutex::default(),
                ready: OnceCell::new(),
            });
            lives.push(live.clone());
            live
        };
        if self.notifications.len() > 0 {
            // A replacement connection (the old one was wedged, or the master moved, or
            // its runtime ended): the channels only the old one carried are subscribed on
            // this one, and listeners, who may have missed a message, are told to look.
            self.adopt_channels(&live).await;
            self.notifications.interrupt_all();
        }
        Ok(live)
    }

    /// A new command connection for the current runtime (and, on one server, its client).
    async fn connect(&self) -> Result<(Conn, Option<redis::Client>), LockError> {
        Ok(match &self.connector {
            Connector::Single(client) => {
                let manager = connect::single(client, self.timeouts, Some(self.dispatch(None)))
                    .map_err(|source| self.error("", source))?;
                (Conn::Single(manager), Some((**client).clone()))
            }
            Connector::Sentinel(sentinel) => {
                let client = sentinel
                    .master(self.timeouts)
                    .await
                    .map_err(|source| self.error("", source))?;
                let manager = connect::single(&client, self.timeouts, Some(self.dispatch(None)))
                    .map_err(|source| self.error("", source))?;
                (Conn::Single(manager), Some(client))
            }
            Connector::Cluster(nodes, tls) => {
                let client = connect::cluster(nodes, tls, self.timeouts, None)
                    .map_err(|source| self.error("", source))?;
                let connection = connect::cluster_connection(&client, self.timeouts)
                    .await
                    .map_err(|source| self.error("", source))?;
                (Conn::Cluster(connection), None)
            }
            Connector::Shared(manager) => (Conn::Single((**manager).clone()), None),
        })
    }

    fn lives(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Live>>> {
        self.lives.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the current runtime's connection has answered before (so a tight budget,
    /// Redlock's per-server timeout, need not include connecting).
    pub(crate) fn answered_before(&self) -> bool {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        let id = runtime.id();
        self.lives().iter().any(|live| {
            live.runtime_id == id && live.runtime.is_alive() && live.ready.initialized()
        })
    }

    /// Records that the current runtime's connection answered.
    pub(crate) fn answered(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let id = runtime.id();
        if let Some(live) = self.lives().iter().find(|live| live.runtime_id == id) {
            let _ = live.ready.set(());
        }
    }

    /// The current runtime's command connection.
    pub(crate) async fn connection(
        &self,
    ) -> Result<impl redis::aio::ConnectionLike + Send + use<>, LockError> {
        Ok(self.live().await?.commands.clone())
    }

    /// The current runtime's connection for durable writes: its own, because `WAIT`
    /// blocks the connection it runs on for up to `wait`.
    pub(crate) async fn durable_connection(&self, wait: Duration) -> Result<Conn, LockError> {
        let live = self.live().await?;
        let timeouts = Timeouts {
            connect: self.timeouts.connect,
            command: self.timeouts.command.saturating_add(wait),
        };
        // Boxed, like `connect`: a cold path with deep futures.
        let connection = live
            .durable
            .get_or_try_init(|| {
                erased(async {
                    match (&self.connector, &live.client) {
                        // The program's connection is all there is (`WAIT` then blocks it).
                        (Connector::Shared(manager), _) => Ok(Conn::Single((**manager).clone())),
                        (Connector::Cluster(nodes, tls), _) => {
                            let client = connect::cluster(nodes, tls, timeouts, None)?;
                            connect::cluster_connection(&client, timeouts)
                                .await
                                .map(Conn::Cluster)
                        }
                        (_, Some(client)) => {
                            connect::single(client, timeouts, None).map(Conn::Single)
                        }
                        (_, None) => unreachable!("one server's connection has its client"),
                    }
                })
            })
            .await
            .map_err(|source| self.error("", source))?;
        Ok(connection.clone())
    }

    /// `WAIT replicas wait` on `connection` (to the master of `slot` on a Cluster): how
    /// many replicas have every write made on it so far.
    pub(crate) async fn wait_for_replicas(
        &self,
        connection: &mut Conn,
        slot: u16,
        replicas: u32,
        wait: Duration,
        name: &str,
    ) -> Result<u32, LockError> {
        let mut command = redis::cmd("WAIT");
        command.arg(replicas).arg(crate::millis::expiry(wait));
        let acknowledged = match connection {
            Conn::Cluster(cluster) => {
                use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
                let master = Route::new(slot, SlotAddr::Master);
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(master));
                cluster
                    .route_command(command, route)
                    .await
                    .and_then(|value| redis::from_redis_value(value).map_err(Into::into))
            }
            Conn::Single(manager) => command.query_async(manager).await,
        };
        acknowledged.map_err(|source| self.error(name, source))
    }

    /// Runs `command`; errors name the lock `name`.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        command: &redis::Cmd,
        name: &str,
    ) -> Result<T, LockError> {
        let mut connection = self.connection().await?;
        command
            .query_async(&mut connection)
            .await
            .map_err(|source| self.error(name, source))
    }

    /// Runs a script; errors name the lock `name`.
    pub(crate) async fn eval<T: redis::FromRedisValue>(
        &self,
        invocation: &crate::scripts::Eval,
        name: &str,
    ) -> Result<T, LockError> {
        let mut connection = self.connection().await?;
        invocation
            .invoke(&mut connection)
            .await
            .map_err(|source| self.error(name, source))
    }

    /// Registers `token` for hand-offs on this server's inbox (subscribed on the current
    /// runtime's connection before this returns).
    pub(crate) async fn listen(&self, token: &str, name: &str) -> Result<Registration, LockError> {
        let live = self.live().await?;
        if let (Conn::Single(manager), false) = (
            &live.commands,
            matches!(self.connector, Connector::Shared(_)),
        ) {
            live.inbox
                .get_or_try_init(|| async {
                    let mut manager = manager.clone();
                    manager
                        .subscribe(&*self.inbox)
                        .await
                        .map_err(|source| self.error(name, source))
                })
                .await?;
        }
        Ok(self.notifications.register(token, None, None))
    }

    /// Registers `token` for what is published on `channel`: frees (Redlock, `PUBLISH`)
    /// or, on a Cluster, hand-offs (`SPUBLISH` in the lock's slot). The channel is
    /// subscribed on the current runtime's connection before this returns, and while some
    /// waiter listens.
    pub(crate) async fn listen_on(
        &self,
        token: &str,
        channel: &str,
        name: &str,
    ) -> Result<Registration, LockError> {
        let live = self.live().await?;
        let registration =
            self.notifications
                .register(token, Some(channel), Some(self.unsubscriber()));
        match self.subscribe(&live, channel).await {
            Ok(()) => Ok(registration),
            Err(source) => Err(self.error(name, source)),
        }
    }

    /// Makes sure `channel`, which someone listens on, is subscribed on the current
    /// runtime's connection (after a runtime switch or a replaced connection). Cheap when
    /// it is: two mutexes.
    pub(crate) async fn keep_subscribed(&self, channel: &str, name: &str) -> Result<(), LockError> {
        let live = self.live().await?;
        self.subscribe(&live, channel)
            .await
            .map_err(|source| self.error(name, source))
    }

    /// Subscribes `channel` on `live`'s connections, unless it is already.
    async fn subscribe(&self, live: &Arc<Live>, channel: &str) -> Result<(), RedisError> {
        let mut channels = live.channels.lock().await;
        if channels.contains(channel) {
            return Ok(());
        }
        match &live.commands {
            Conn::Single(manager) => manager.clone().subscribe(channel).await?,
            Conn::Cluster(_) => self.shards(live).await?.ssubscribe(channel).await?,
        }
        channels.insert(channel.to_owned());
        Ok(())
    }

    /// Subscribes on the new connection `live` every channel someone listens on that no
    /// other live connection carries (those of a connection that was replaced, or whose
    /// runtime ended).
    async fn adopt_channels(&self, live: &Arc<Live>) {
        let others: Vec<Arc<Live>> = self
            .lives()
            .iter()
            .filter(|other| !Arc::ptr_eq(other, live) && other.runtime.is_alive())
            .cloned()
            .collect();
        for channel in self.notifications.channels() {
            let mut carried = false;
            for other in &others {
                carried |= other.channels.lock().await.contains(&channel);
            }
            if carried {
                continue;
            }
            if let Err(error) = self.subscribe(live, &channel).await {
                tracing::debug!(name: "lock.resubscribe_failed", target: crate::observe::TARGET, %channel, %error, "subscribing again on a new connection failed; its listeners look at their next timer");
            }
        }
    }

    /// Whether the locker runs on the program's own connection, whose pushes are the
    /// program's: nothing subscribed there reaches the locker.
    pub(crate) fn is_shared(&self) -> bool {
        matches!(self.connector, Connector::Shared(_))
    }

    /// Unsubscribes a channel from every runtime's connection once its last waiter left
    /// (in the background, unless a waiter came back meanwhile).
    fn unsubscriber(&self) -> OnLastLeave {
        let lives = Arc::downgrade(&self.lives);
        let notifications = Arc::downgrade(&self.notifications);
        Arc::new(move |channel: &str| {
            let (Some(lives), Some(notifications)) = (lives.upgrade(), notifications.upgrade())
            else {
                return;
            };
            let lives = lives.lock().unwrap_or_else(PoisonError::into_inner).clone();
            // On each connection's own runtime: the last listener may leave from anywhere
            // (a watch dropped outside any runtime).
            for live in lives.into_iter().filter(|live| live.runtime.is_alive()) {
                let (channel, notifications) = (channel.to_owned(), notifications.clone());
                let handle = live.handle.clone();
                handle.spawn(async move { live.unsubscribe(&channel, &notifications).await });
            }
        })
    }

    /// The current runtime's connection for sharded subscriptions (Cluster), opened on
    /// first use with a task that renews the subscriptions the server drops.
    async fn shards(&self, live: &Arc<Live>) -> Result<ClusterConnection, RedisError> {
        let Connector::Cluster(nodes, tls) = &self.connector else {
            unreachable!("only a cluster has a shards connection");
        };
        // Boxed, like `connect`: a cold path with deep futures.
        let shards = live
            .shards
            .get_or_try_init(|| {
                erased(async {
                    let (dropped, renew) = mpsc::unbounded_channel();
                    let client = connect::cluster(
                        nodes,
                        tls,
                        self.timeouts,
                        Some(self.dispatch(Some(dropped))),
                    )?;
                    let connection = connect::cluster_connection(&client, self.timeouts).await?;
                    crate::runtime::spawn(resubscribe(
                        Arc::downgrade(live),
                        self.notifications.clone(),
                        connection.clone(),
                        renew,
                    ));
                    Ok::<_, RedisError>(connection)
                })
            })
            .await?;
        Ok(shards.clone())
    }

    /// Whether `source`, on a Sentinel-managed server, says the master may have moved:
    /// demoted (`READONLY`), gone or unresponsive.
    fn master_moved(&self, source: &RedisError) -> bool {
        matches!(self.connector, Connector::Sentinel(_))
            && (source.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
                || source.is_connection_dropped()
                || source.is_connection_refusal()
                || source.is_timeout())
    }

    /// What `source` means for an operation on the lock `name` (empty: none).
    pub(crate) fn error(&self, name: &str, source: RedisError) -> LockError {
        if wedges(&source) || self.master_moved(&source) {
            // A connection manager whose reconnect failed this way never tries again, and
            // a Sentinel's master may have moved: the next command starts a new one (and
            // asks the sentinels again).
            self.lives().clear();
        }
        if is_auth_error(&source) {
            return LockError::Auth {
                server: self.address.clone(),
                source,
            };
        }
        if is_connect_failure(&source) {
            return LockError::Connect {
                server: self.address.clone(),
                source,
            };
        }
        LockError::Backend {
            name: name.to_owned(),
            source,
        }
    }
}

/// `future` boxed behind `dyn Future`: the cold connection paths go through redis-rs
/// futures (TLS, Cluster, Sentinel) deep enough that, left in the type of every future
/// that awaits a command, they overflow the compiler's trait solving of `Send`.
fn erased<'a, T>(
    future: impl Future<Output = T> + Send + 'a,
) -> futures_util::future::BoxFuture<'a, T> {
    Box::pin(future)
}

/// Renews the sharded subscriptions the server dropped (the slot moved or its master
/// failed over): their waiters try again at once (they may have missed a hand-off), and
/// the channel is subscribed again, at its slot's new owner. Our own unsubscribes arrive
/// here too, for channels no longer wanted.
async fn resubscribe(
    live: Weak<Live>,
    notifications: Arc<Notifications>,
    mut shards: ClusterConnection,
    mut dropped: mpsc::UnboundedReceiver<String>,
) {
    while let Some(channel) = dropped.recv().await {
        let Some(live) = live.upgrade() else {
            return;
        };
        if !live.channels.lock().await.contains(&channel) {
            continue;
        }
        notifications.interrupt_channel(&channel);
        for pause in [0, 50, 200, 500, 1_000] {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            match shards.ssubscribe(&channel).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::debug!(name: "lock.resubscribe_failed", target: crate::observe::TARGET, %channel, %error, "SSUBSCRIBE again failed; retrying")
                }
            }
        }
    }
}

/// An error that, met while reconnecting, leaves a `ConnectionManager` failing for good
/// (it only reconnects again after I/O errors).
fn wedges(error: &RedisError) -> bool {
    error.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(error.code(), Some("WRONGPASS" | "NOAUTH" | "LOADING"))
}

/// A failure to reach the server at all: refused, unresolvable, unreachable, a TLS
/// handshake that failed (a wrong CA), or a client that cannot connect as configured.
fn is_connect_failure(error: &RedisError) -> bool {
    use std::io::ErrorKind;
    // redis-rs keeps an I/O error behind an `Arc<dyn Error>`.
    let io = std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>())
        .and_then(|inner| inner.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind);
    error.is_connection_refusal()
        || error.kind() == redis::ErrorKind::InvalidClientConfig
        || matches!(
            io,
            Some(
                ErrorKind::InvalidData
                    | ErrorKind::NotFound
                    | ErrorKind::AddrNotAvailable
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
                    | ErrorKind::PermissionDenied
            )
        )
}

/// A refused password or user, or a missing ACL permission (also for a command a script
/// runs, which the server reports as a plain error).
fn is_auth_error(error: &RedisError) -> bool {
    error.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(error.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
        || error.detail().is_some_and(|detail| {
            detail.contains("can't run this command") || detail.contains("no permissions")
        })
}
