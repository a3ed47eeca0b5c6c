//! One Redis server: scripts over a multiplexed, reconnecting connection, and one shared
//! pub/sub connection for release notifications.

use std::future::Future;
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink, PubSubStream};
use redis::{RedisError, Script};
use tokio::sync::{Mutex, OnceCell};

use super::batch::{Batcher, Entry, Op};
use super::channels::Leave;
use super::{
    Attempt, Backend, BoxFuture, Channels, ExtendMode, Handoff, QueueSpec, ReleaseWatch, Remaining,
    Renewal,
};
use crate::LockError;
use crate::guard::Released;
use crate::key::LockKeys;

static ACQUIRE_FENCED: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/acquire_fenced.lua")));
static ACQUIRE_QUEUED: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/acquire_queued.lua")));
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/release_fn.lua"),
        include_str!("scripts/release.lua")
    ))
});
static EXTEND: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/extend.lua")));
static EXTEND_MANY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/extend_many.lua")));

/// Locks renewed per script call: bounds the time one call blocks the server.
const RENEWALS_PER_CALL: usize = 500;

/// Timeouts of the Redis backend.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// Bound on establishing a connection.
    pub(crate) connect: Duration,
    /// Bound on one command's round trip.
    pub(crate) command: Duration,
}

/// Locks on one Redis server.
pub(crate) struct RedisBackend {
    client: redis::Client,
    server: String,
    timeouts: Timeouts,
    connection: OnceCell<ConnectionManager>,
    hub: Arc<PubSubHub>,
    /// One server of a Redlock: its waiters do not queue, so a release that frees the
    /// lock publishes on its channel, and a busy attempt reports the holder's TTL.
    redlock_member: bool,
    /// Combines concurrent unfenced acquires and releases (not for Redlock's servers,
    /// whose calls are bounded per server).
    batcher: Arc<Batcher>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("server", &self.server)
            .field("timeouts", &self.timeouts)
            .field("connected", &self.connection.initialized())
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Does not connect: the first command does.
    pub(crate) fn new(client: redis::Client, timeouts: Timeouts) -> Self {
        let server = client.get_connection_info().addr().to_string();
        Self {
            hub: Arc::new(PubSubHub {
                client: client.clone(),
                server: server.clone(),
                timeouts,
                inbox: format!("lock-runtime:inbox:{}", uuid::Uuid::new_v4().simple()).into(),
                live: Mutex::new(None),
            }),
            client,
            server,
            timeouts,
            connection: OnceCell::new(),
            redlock_member: false,
            batcher: Arc::default(),
        }
    }

    /// One server of a Redlock (see the `redlock_member` field).
    pub(crate) fn redlock_member(client: redis::Client, timeouts: Timeouts) -> Self {
        Self {
            redlock_member: true,
            ..Self::new(client, timeouts)
        }
    }

    /// The server's `host:port`.
    pub(crate) fn server(&self) -> &str {
        &self.server
    }

    /// Subscribes to the lock's release channel on this server, for waiters that do not
    /// queue (Redlock): they hear every release that frees the lock.
    pub(crate) async fn watch_channel(&self, keys: &LockKeys) -> Result<ReleaseWatch, LockError> {
        PubSubHub::watch(self.hub.clone(), keys.channel()).await
    }

    async fn connection(&self) -> Result<ConnectionManager, LockError> {
        let connection = self
            .connection
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeouts.connect))
                    .set_response_timeout(Some(self.timeouts.command))
                    .set_number_of_retries(2)
                    .set_min_delay(Duration::from_millis(20))
                    .set_max_delay(self.timeouts.connect);
                let connect = ConnectionManager::new_with_config(self.client.clone(), config);
                bounded(self.timeouts.connect, connect)
                    .await
                    .map_err(|source| self.connect_error(source))
            })
            .await?;
        Ok(connection.clone())
    }

    fn connect_error(&self, source: RedisError) -> LockError {
        LockError::Connect {
            server: self.server.clone(),
            source,
        }
    }

    /// Runs `script` on the lock's key with the command timeout.
    async fn run<T: redis::FromRedisValue>(
        &self,
        keys: &LockKeys,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, LockError> {
        let mut connection = self.connection().await?;
        invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|source| backend_error(keys, source))
    }
}

impl RedisBackend {
    /// Runs `alone` on the connection, or, when enough requests are outstanding, has
    /// `op` sent in the next combined call ([`Batcher`]); 1 or 0 either way.
    async fn combined<F, Fut>(
        &self,
        keys: &LockKeys,
        op: impl FnOnce() -> Op,
        alone: F,
    ) -> Result<i64, LockError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<i64>>,
    {
        match self.batcher.enter(op) {
            Entry::Batched(answer) => answer.await.unwrap_or_else(|_| {
                Err(backend_error(
                    keys,
                    RedisError::from(std::io::Error::other(
                        "the combined call was dropped (is the runtime shutting down?)",
                    )),
                ))
            }),
            Entry::Alone(mut permit) => {
                let connection = self.connection().await?;
                permit.connection(&connection);
                alone(connection)
                    .await
                    .map_err(|source| backend_error(keys, source))
            }
        }
    }

    /// Sends one command with the command timeout; `on_error` names what failed.
    async fn query<T: redis::FromRedisValue>(
        &self,
        command: redis::Cmd,
        on_error: impl FnOnce(RedisError) -> LockError,
    ) -> Result<T, LockError> {
        let mut connection = self.connection().await?;
        command.query_async(&mut connection).await.map_err(on_error)
    }
}

fn backend_error(keys: &LockKeys, source: RedisError) -> LockError {
    LockError::Backend {
        key: keys.key().to_owned(),
        source,
    }
}

/// Runs `future` for at most `limit`, turning the timeout into a `RedisError`.
async fn bounded<T>(
    limit: Duration,
    future: impl Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    match tokio::time::timeout(limit, future).await {
        Ok(result) => result,
        Err(_) => Err(RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {limit:?}"),
        ))),
    }
}

/// Milliseconds for a Redis argument; durations are validated to fit long before this.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A PTTL reply as a [`Remaining`].
fn remaining_from_pttl(pttl: i64) -> Remaining {
    match u64::try_from(pttl) {
        Ok(ms) => Remaining::Expires(Duration::from_millis(ms)),
        Err(_) if pttl == -1 => Remaining::Forever,
        Err(_) => Remaining::Free,
    }
}

/// An acquire reply as an [`Attempt`]: `value` is the fencing token when won, else the
/// holder's PTTL.
fn attempt_from(won: bool, value: i64, fencing: bool) -> Attempt {
    if won {
        return Attempt::Acquired {
            fence: fencing.then(|| u64::try_from(value).unwrap_or_default()),
        };
    }
    Attempt::Busy {
        remaining: match remaining_from_pttl(value) {
            Remaining::Expires(left) => Some(left),
            // Gone since the SET: retry at once.
            Remaining::Free => Some(Duration::ZERO),
            Remaining::Forever => None,
        },
    }
}

impl Backend for RedisBackend {
    fn acquire<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
        ttl: Duration,
        fencing: bool,
    ) -> BoxFuture<'a, Result<Attempt, LockError>> {
        Box::pin(async move {
            if fencing {
                let mut invocation = ACQUIRE_FENCED.key(keys.key());
                invocation.key(keys.fence()).arg(token).arg(millis(ttl));
                let (won, value): (i64, i64) = self.run(keys, invocation).await?;
                return Ok(attempt_from(won == 1, value, true));
            }
            // The common case needs no script: SET NX PX.
            let mut set = redis::cmd("SET");
            set.arg(keys.key())
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(millis(ttl));
            if self.redlock_member {
                // Redlock's waiters do not queue: they need the holder's TTL now.
                let mut pipe = redis::pipe();
                pipe.add_command(set).cmd("PTTL").arg(keys.key());
                let mut connection = self.connection().await?;
                let (set, pttl): (redis::Value, i64) = pipe
                    .query_async(&mut connection)
                    .await
                    .map_err(|source| backend_error(keys, source))?;
                return Ok(attempt_from(set != redis::Value::Nil, pttl, false));
            }
            // A lone server does not ask for the holder's TTL: a waiter's next (queued)
            // attempt reports it.
            let op = || Op::Acquire {
                key: keys.key().to_owned(),
                token: token.to_owned(),
                ttl_ms: millis(ttl),
            };
            let won = self
                .combined(keys, op, |mut connection| async move {
                    let set: redis::Value = set.query_async(&mut connection).await?;
                    Ok(i64::from(set != redis::Value::Nil))
                })
                .await?;
            Ok(attempt_from(won == 1, -1, false))
        })
    }

    fn acquire_queued<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
        ttl: Duration,
        fencing: bool,
        queue: &'a QueueSpec,
    ) -> BoxFuture<'a, Result<Attempt, LockError>> {
        let Some(inbox) = &queue.inbox else {
            return self.acquire(keys, token, ttl, fencing);
        };
        Box::pin(async move {
            let mut invocation = ACQUIRE_QUEUED.key(keys.key());
            invocation
                .key(keys.fence())
                .key(keys.queue())
                .key(keys.waiting())
                .arg(token)
                .arg(millis(ttl))
                .arg(if fencing { "1" } else { "0" })
                .arg(millis(queue.alive_for))
                .arg(millis(queue.claim_within))
                .arg(&**inbox);
            let (won, value): (i64, i64) = self.run(keys, invocation).await?;
            Ok(attempt_from(won == 1, value, fencing))
        })
    }

    fn release<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Released, LockError>> {
        Box::pin(async move {
            let mut invocation = RELEASE.key(keys.key());
            invocation
                .key(keys.queue())
                .key(keys.waiting())
                .arg(token)
                .arg(keys.channel())
                .arg(if self.redlock_member { "1" } else { "0" });
            let released: i64 = if self.redlock_member {
                self.run(keys, invocation).await?
            } else {
                let op = || Op::Release {
                    keys: keys.clone(),
                    token: token.to_owned(),
                };
                self.combined(keys, op, |mut connection| async move {
                    invocation.invoke_async(&mut connection).await
                })
                .await?
            };
            Ok(Released::single(released == 1))
        })
    }

    fn extend<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
        by: Duration,
        mode: ExtendMode,
    ) -> BoxFuture<'a, Result<Option<Duration>, LockError>> {
        Box::pin(async move {
            let mut invocation = EXTEND.key(keys.key());
            invocation.arg(token).arg(millis(by)).arg(match mode {
                ExtendMode::Set => "set",
                ExtendMode::Add => "add",
            });
            let remaining: u64 = self.run(keys, invocation).await?;
            Ok((remaining > 0).then(|| Duration::from_millis(remaining)))
        })
    }

    fn extend_many<'a>(
        &'a self,
        batch: &'a [Renewal<'a>],
    ) -> BoxFuture<'a, Vec<Result<Option<Duration>, LockError>>> {
        Box::pin(async move {
            let mut outcomes = Vec::with_capacity(batch.len());
            for chunk in batch.chunks(RENEWALS_PER_CALL) {
                let mut invocation = EXTEND_MANY.prepare_invoke();
                for renewal in chunk {
                    invocation
                        .key(renewal.keys.key())
                        .arg(renewal.token)
                        .arg(millis(renewal.ttl));
                }
                match self.run::<Vec<u64>>(chunk[0].keys, invocation).await {
                    Ok(renewed) => outcomes.extend(
                        renewed
                            .into_iter()
                            .map(|ms| Ok((ms > 0).then(|| Duration::from_millis(ms)))),
                    ),
                    Err(error) => {
                        let why = error.to_string();
                        outcomes.extend(chunk.iter().map(|renewal| {
                            Err(LockError::Backend {
                                key: renewal.keys.key().to_owned(),
                                source: RedisError::from(std::io::Error::other(why.clone())),
                            })
                        }));
                    }
                }
            }
            outcomes
        })
    }

    fn holder<'a>(
        &'a self,
        keys: &'a LockKeys,
    ) -> BoxFuture<'a, Result<Option<String>, LockError>> {
        let mut get = redis::cmd("GET");
        get.arg(keys.key());
        Box::pin(self.query(get, |source| backend_error(keys, source)))
    }

    fn remaining<'a>(&'a self, keys: &'a LockKeys) -> BoxFuture<'a, Result<Remaining, LockError>> {
        let mut pttl = redis::cmd("PTTL");
        pttl.arg(keys.key());
        Box::pin(async move {
            let pttl: i64 = self
                .query(pttl, |source| backend_error(keys, source))
                .await?;
            Ok(remaining_from_pttl(pttl))
        })
    }

    /// Hand-offs arrive on the hub's inbox, so nothing is subscribed per lock.
    fn watch<'a>(&'a self, keys: &'a LockKeys) -> BoxFuture<'a, Result<ReleaseWatch, LockError>> {
        Box::pin(PubSubHub::watch_inbox(self.hub.clone(), keys.channel()))
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), LockError>> {
        Box::pin(async move {
            let pong: String = self
                .query(redis::cmd("PING"), |source| self.connect_error(source))
                .await?;
            tracing::trace!(%pong, server = %self.server, "ping");
            Ok(())
        })
    }

    fn fencing_refusal(&self) -> Option<&'static str> {
        None
    }
}

/// The one pub/sub connection of a backend, opened on the first wait and shared by all
/// waiters. It is subscribed to the backend's inbox, where releases hand locks to its
/// queued waiters, and (for waiters that do not queue) to the release channels at least
/// one of them watches.
#[derive(Debug)]
struct PubSubHub {
    client: redis::Client,
    server: String,
    timeouts: Timeouts,
    /// `lock-runtime:inbox:<uuid>`, unique to this backend.
    inbox: Arc<str>,
    /// Also serialises SUBSCRIBE/UNSUBSCRIBE, so a channel's waiter count and the server's
    /// subscription always agree.
    live: Mutex<Option<LiveConnection>>,
}

#[derive(Debug)]
struct LiveConnection {
    sink: PubSubSink,
    channels: Arc<Channels>,
    reader: tokio::task::AbortHandle,
}

impl Drop for LiveConnection {
    /// Waiters still watching this connection's channels are told it is gone, so they
    /// subscribe again on the next one.
    fn drop(&mut self) {
        self.reader.abort();
        self.channels.close_all();
    }
}

/// Leaves a channel of one pub/sub connection; unsubscribes when it was the last waiter.
struct HubLeave {
    hub: Weak<PubSubHub>,
    channels: Arc<Channels>,
}

impl Leave for HubLeave {
    fn leave(&self, channel: &str) {
        if !self.channels.leave(channel) {
            return;
        }
        let (Some(hub), Ok(runtime)) = (self.hub.upgrade(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let channels = self.channels.clone();
        let channel = channel.to_owned();
        runtime.spawn(async move {
            let mut live = hub.live.lock().await;
            let Some(live) = live.as_mut() else { return };
            // A newer connection, or a waiter that came back meanwhile, keeps it.
            if !Arc::ptr_eq(&live.channels, &channels) || channels.contains(&channel) {
                return;
            }
            if let Err(error) = bounded(hub.timeouts.command, live.sink.unsubscribe(&channel)).await {
                tracing::debug!(%channel, %error, "UNSUBSCRIBE failed; the channel stays subscribed");
            }
        });
    }
}

impl PubSubHub {
    /// The live connection, opening one (and subscribing the inbox) when there is none.
    async fn live<'a>(
        &self,
        live: &'a mut Option<LiveConnection>,
    ) -> Result<&'a mut LiveConnection, LockError> {
        let connection = match live.take() {
            Some(connection) if !connection.channels.is_closed() => connection,
            _ => self.connect().await?,
        };
        Ok(live.insert(connection))
    }

    /// A watch of `channel` fed by the inbox: no server round trip once connected.
    async fn watch_inbox(hub: Arc<Self>, channel: &str) -> Result<ReleaseWatch, LockError> {
        let mut live = hub.live.lock().await;
        let channels = hub.live(&mut live).await?.channels.clone();
        let (receiver, _first) = channels.join(channel);
        Ok(ReleaseWatch::new(receiver, channel.to_owned(), channels).with_inbox(hub.inbox.clone()))
    }

    /// A watch of `channel` subscribed on the server.
    async fn watch(hub: Arc<Self>, channel: &str) -> Result<ReleaseWatch, LockError> {
        let mut live = hub.live.lock().await;
        let connection = hub.live(&mut live).await?;
        let channels = connection.channels.clone();
        let (receiver, first) = channels.join(channel);
        if first {
            let subscribed =
                bounded(hub.timeouts.command, connection.sink.subscribe(channel)).await;
            if let Err(source) = subscribed {
                channels.leave(channel);
                // The connection is suspect: open a fresh one next time.
                *live = None;
                return Err(LockError::Connect {
                    server: hub.server.clone(),
                    source,
                });
            }
        }
        let owner = Arc::new(HubLeave {
            hub: Arc::downgrade(&hub),
            channels,
        });
        Ok(ReleaseWatch::new(receiver, channel.to_owned(), owner))
    }

    async fn connect(&self) -> Result<LiveConnection, LockError> {
        let connect_error = |source| LockError::Connect {
            server: self.server.clone(),
            source,
        };
        let pubsub = bounded(self.timeouts.connect, self.client.get_async_pubsub())
            .await
            .map_err(connect_error)?;
        let (mut sink, stream) = pubsub.split();
        bounded(self.timeouts.command, sink.subscribe(&*self.inbox))
            .await
            .map_err(connect_error)?;
        let channels = Arc::new(Channels::default());
        let reader = tokio::spawn(read_releases(stream, channels.clone(), self.inbox.clone()))
            .abort_handle();
        Ok(LiveConnection {
            sink,
            channels,
            reader,
        })
    }
}

/// Wakes the waiters of every message's channel (for the inbox: of the channel its
/// payload names) until the connection ends; then wakes them all for good, so they fall
/// back to timers and re-subscribe.
async fn read_releases(mut stream: PubSubStream, channels: Arc<Channels>, inbox: Arc<str>) {
    while let Some(message) = stream.next().await {
        if message.get_channel_name() != &*inbox {
            // A lock's own channel only hears releases that free it (Redlock's).
            channels.notify(message.get_channel_name(), Handoff::Free);
            continue;
        }
        // '<token> <release channel>': the lock went to the waiter with that token.
        let payload = String::from_utf8_lossy(message.get_payload_bytes());
        match payload.split_once(' ') {
            Some((token, channel)) => channels.notify(channel, Handoff::To(token.into())),
            None => tracing::debug!(%payload, "malformed hand-off message ignored"),
        }
    }
    tracing::debug!("pub/sub connection closed; waiters fall back to timers");
    channels.close_all();
}
