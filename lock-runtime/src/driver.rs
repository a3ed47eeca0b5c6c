//! One Redis server: its connection, its notifications, and what its errors mean.
//!
//! # Behavior
//!
//! - One multiplexed, reconnecting connection ([`ConnectionManager`]) per server, opened
//!   by the first command, speaking RESP3: commands and notifications share it (no
//!   second pub/sub connection). Concurrent commands are pipelined on it.
//! - A connection belongs to the tokio runtime that opened it (redis-rs runs its reader
//!   and reconnection there), so each runtime that uses the locker gets its own, and one
//!   runtime ending never breaks another's commands or notifications. Connections of
//!   runtimes that shut down are dropped on the next use.
//! - Releases tell waiters on this locker's *inbox*, a channel subscribed once per
//!   connection (and again automatically after a reconnect). Frees on a lock's own
//!   channel (Redlock) are subscribed while some waiter listens.
//! - When the connection drops, every waiter is told to try again at once (it may have
//!   missed a message); commands meanwhile fail with [`LockError::Backend`] within the
//!   command timeout, or wait for the reconnection.
//! - A command waits for a reconnection at most the connect timeout (one attempt), then
//!   its own command timeout. A reconnection refused for its credentials (or while the
//!   server loads its data) is not retried by redis-rs: the next command opens a new
//!   connection instead.
//! - Errors are classified once, here: unreachable is [`LockError::Connect`], refused
//!   credentials or permissions [`LockError::Auth`], the rest [`LockError::Backend`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{PushInfo, PushKind, RedisError, Value};
use tokio::sync::OnceCell;

use crate::LockError;
use crate::notify::{Notifications, OnLastLeave, Registration};
use crate::queue::Handoff;
use crate::runtime::RuntimeAlive;

/// Timeouts of a server connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// Bound on establishing a connection (each attempt).
    pub(crate) connect: Duration,
    /// Bound on one command's round trip.
    pub(crate) command: Duration,
}

/// One Redis server.
pub(crate) struct Server {
    client: redis::Client,
    address: String,
    timeouts: Timeouts,
    notifications: Arc<Notifications>,
    /// `lock-runtime:inbox:<uuid>`: where releases tell this server's waiters.
    inbox: Arc<str>,
    /// The connection of each runtime that uses this server.
    live: Arc<Mutex<Vec<Arc<Live>>>>,
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

/// The connection of one runtime.
struct Live {
    runtime_id: tokio::runtime::Id,
    manager: ConnectionManager,
    runtime: RuntimeAlive,
    /// Set once the inbox is subscribed on this connection.
    inbox: OnceCell<()>,
    /// The lock channels subscribed on this connection (Redlock frees).
    channels: Mutex<HashSet<String>>,
}

impl Live {
    /// Unsubscribes `channel` in the background (a channel left subscribed only costs
    /// messages nobody listens to).
    fn unsubscribe(&self, channel: &str) {
        let mut manager = self.manager.clone();
        let channel = channel.to_owned();
        crate::runtime::spawn(async move {
            if let Err(error) = manager.unsubscribe(&channel).await {
                tracing::debug!(%channel, %error, "UNSUBSCRIBE failed; the channel stays subscribed");
            }
        });
    }
}

impl Server {
    /// A server reached through `client` (RESP3). Does not connect.
    pub(crate) fn new(client: redis::Client, timeouts: Timeouts) -> Self {
        let address = client.get_connection_info().addr().to_string();
        Self {
            client,
            address,
            timeouts,
            notifications: Arc::default(),
            inbox: format!("lock-runtime:inbox:{}", uuid::Uuid::new_v4().simple()).into(),
            live: Arc::default(),
        }
    }

    /// `host:port`, without credentials.
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

    /// The connection of the current runtime, opened on first use.
    fn live(&self) -> Result<Arc<Live>, LockError> {
        let runtime_id = tokio::runtime::Handle::try_current()
            .map_err(|_| LockError::Config("lock operations need a tokio runtime".into()))?
            .id();
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(current) = live.iter().find(|live| live.runtime_id == runtime_id) {
            return Ok(current.clone());
        }
        live.retain(|live| live.runtime.is_alive());
        let runtime = RuntimeAlive::current()
            .ok_or_else(|| LockError::Config("lock operations need a tokio runtime".into()))?;
        let notifications = self.notifications.clone();
        let inbox = self.inbox.clone();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeouts.connect))
            .set_response_timeout(Some(self.timeouts.command))
            // One connection attempt per reconnect: a command waiting for it is then
            // bounded by the connect timeout plus the command timeout (redis-rs does not
            // count the wait for a reconnect against the response timeout).
            .set_number_of_retries(0)
            .set_push_sender(move |push: PushInfo| {
                dispatch(&notifications, &inbox, push);
                Ok::<(), std::convert::Infallible>(())
            })
            .set_automatic_resubscription();
        let manager = ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            .map_err(|source| self.connect_error(source))?;
        let fresh = Arc::new(Live {
            runtime_id,
            manager,
            runtime,
            inbox: OnceCell::new(),
            channels: Mutex::default(),
        });
        live.push(fresh.clone());
        Ok(fresh)
    }

    /// A handle on the current connection, for one or more commands.
    pub(crate) fn connection(&self) -> Result<ConnectionManager, LockError> {
        Ok(self.live()?.manager.clone())
    }

    /// Runs `command` on the current connection; errors name the lock `name`.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        command: &redis::Cmd,
        name: &str,
    ) -> Result<T, LockError> {
        let mut connection = self.connection()?;
        command
            .query_async(&mut connection)
            .await
            .map_err(|source| self.error(name, source))
    }

    /// Runs a script on the current connection; errors name the lock `name`.
    pub(crate) async fn eval<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
        name: &str,
    ) -> Result<T, LockError> {
        let mut connection = self.connection()?;
        invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|source| self.error(name, source))
    }

    /// Registers `token` for hand-offs on this server's inbox (subscribed on the current
    /// connection before this returns).
    pub(crate) async fn listen(&self, token: &str, name: &str) -> Result<Registration, LockError> {
        let live = self.live()?;
        live.inbox
            .get_or_try_init(|| async {
                let mut connection = live.manager.clone();
                connection
                    .subscribe(&*self.inbox)
                    .await
                    .map_err(|source| self.error(name, source))
            })
            .await?;
        Ok(self.notifications.register(token, None, None))
    }

    /// Registers `token` for frees on `channel` (subscribed on this runtime's connection
    /// while some waiter listens).
    pub(crate) async fn listen_frees(
        &self,
        token: &str,
        channel: &str,
        name: &str,
    ) -> Result<Registration, LockError> {
        let live = self.live()?;
        let unsubscribe: OnLastLeave = {
            let lives = Arc::downgrade(&self.live);
            Arc::new(move |channel: &str| {
                let Some(lives) = lives.upgrade() else {
                    return;
                };
                let lives = lives.lock().unwrap_or_else(PoisonError::into_inner).clone();
                for live in lives.into_iter().filter(|live| live.runtime.is_alive()) {
                    let subscribed = live
                        .channels
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(channel);
                    if subscribed {
                        live.unsubscribe(channel);
                    }
                }
            })
        };
        let registration = self
            .notifications
            .register(token, Some(channel), Some(unsubscribe));
        let first = live
            .channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(channel.to_owned());
        if first {
            let mut connection = live.manager.clone();
            if let Err(source) = connection.subscribe(channel).await {
                live.channels
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(channel);
                return Err(self.error(name, source));
            }
        }
        Ok(registration)
    }

    /// What `source` means for an operation on the lock `name` (empty: none).
    pub(crate) fn error(&self, name: &str, source: RedisError) -> LockError {
        if wedges(&source) {
            // A connection manager whose reconnect failed this way never tries again:
            // the next command starts a new one.
            self.live
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
        if is_auth_error(&source) {
            return LockError::Auth {
                server: self.address.clone(),
                source,
            };
        }
        if source.is_connection_refusal() || source.kind() == redis::ErrorKind::InvalidClientConfig
        {
            return self.connect_error(source);
        }
        LockError::Backend {
            name: name.to_owned(),
            source,
        }
    }

    fn connect_error(&self, source: RedisError) -> LockError {
        LockError::Connect {
            server: self.address.clone(),
            source,
        }
    }
}

/// An error that, met while reconnecting, leaves a `ConnectionManager` failing for good
/// (it only reconnects again after I/O errors).
fn wedges(error: &RedisError) -> bool {
    error.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(error.code(), Some("WRONGPASS" | "NOAUTH" | "LOADING"))
}

/// A refused password or user, or a missing ACL permission.
fn is_auth_error(error: &RedisError) -> bool {
    error.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(error.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
}

/// Turns a push message into wake-ups: hand-offs on the inbox (or, sharded, on a lock's
/// channel) go to the waiter they name, an empty message on a lock's channel is a free,
/// and a lost connection interrupts every waiter.
fn dispatch(notifications: &Notifications, inbox: &str, push: PushInfo) {
    match push.kind {
        PushKind::Message | PushKind::SMessage => {
            let [channel, payload] = push.data.as_slice() else {
                return;
            };
            let (Some(channel), Some(payload)) = (bytes(channel), bytes(payload)) else {
                return;
            };
            if payload.is_empty() && channel != inbox.as_bytes() {
                notifications.free(&String::from_utf8_lossy(channel));
            } else if let Some(handoff) = Handoff::parse(payload) {
                notifications.handoff(handoff);
            } else {
                tracing::debug!(payload = %String::from_utf8_lossy(payload), "malformed notification ignored");
            }
        }
        PushKind::Disconnection => notifications.interrupt_all(),
        _ => {}
    }
}

fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        _ => None,
    }
}
