//! How each kind of server is connected: the settings given to redis-rs in one place.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionInfo, ProtocolVersion, RedisResult};

use super::Timeouts;
use super::push::Dispatch;

/// Certificates for `rediss://` connections: a CA to trust instead of the system's, and
/// a client certificate for mutual TLS.
#[derive(Clone, Default)]
pub(crate) struct Tls {
    #[cfg(any(feature = "tls-rustls", feature = "tls-native-tls"))]
    pub(crate) certificates: Option<redis::TlsCertificates>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

/// Where a server's connections go.
#[derive(Debug)]
pub(super) enum Connector {
    /// One server (RESP3: notifications share the command connection).
    Single(Box<redis::Client>),
    /// A Redis Cluster, through any of these nodes.
    Cluster(Vec<ConnectionInfo>, Tls),
    /// One server, the master that its sentinels name at the time of connecting.
    Sentinel(Box<Sentinel>),
    /// The program's own connection to one server: commands only (its push messages go
    /// to the program, so nothing is subscribed on it).
    Shared(Box<ConnectionManager>),
}

/// A master found through its sentinels.
pub(super) struct Sentinel {
    master: String,
    client: tokio::sync::Mutex<SentinelClient>,
}

impl std::fmt::Debug for Sentinel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sentinel")
            .field("master", &self.master)
            .finish_non_exhaustive()
    }
}

impl Sentinel {
    /// The master `master` of the sentinels at `sentinels`. Credentials and the database
    /// in the (first) sentinel URL are used for the sentinels and for the master.
    pub(super) fn new(master: &str, sentinels: &[ConnectionInfo], tls: &Tls) -> RedisResult<Self> {
        let settings = sentinels
            .first()
            .map(|info| info.redis_settings().clone())
            .unwrap_or_default();
        let secure = sentinels
            .iter()
            .any(|info| matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }));
        let mut builder = SentinelClientBuilder::new(
            sentinels.iter().map(|info| info.addr().clone()),
            master,
            SentinelServerType::Master,
        )?
        .set_client_to_redis_protocol(ProtocolVersion::RESP3)
        .set_client_to_redis_db(settings.db())
        .set_client_to_redis_tcp_settings(TcpSettings::default().set_nodelay(true))
        .set_client_to_sentinel_tcp_settings(TcpSettings::default().set_nodelay(true));
        if let Some(username) = settings.username() {
            builder = builder
                .set_client_to_redis_username(username)
                .set_client_to_sentinel_username(username);
        }
        if let Some(password) = settings.password() {
            builder = builder
                .set_client_to_redis_password(password)
                .set_client_to_sentinel_password(password);
        }
        if secure {
            builder = builder
                .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure);
        }
        #[cfg(feature = "tls-rustls")]
        if let (true, Some(certificates)) = (secure, &tls.certificates) {
            builder = builder
                .set_client_to_redis_certificates(certificates.clone())
                .set_client_to_sentinel_certificates(certificates.clone());
        }
        let _ = tls;
        Ok(Self {
            master: master.to_owned(),
            client: tokio::sync::Mutex::new(builder.build()?),
        })
    }

    /// A client for the current master, asking the sentinels (bounded by twice the
    /// connect timeout).
    pub(super) async fn master(&self, timeouts: Timeouts) -> RedisResult<redis::Client> {
        let limit = timeouts.connect.saturating_mul(2);
        let resolve = async { self.client.lock().await.async_get_client().await };
        match tokio::time::timeout(limit, resolve).await {
            Ok(client) => client,
            Err(_) => Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no sentinel named the master within {limit:?}"),
            ))),
        }
    }

    pub(super) fn name(&self) -> &str {
        &self.master
    }
}

/// A connection for commands.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
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

/// `info` speaking RESP3 with `TCP_NODELAY` (lock commands are small request/response
/// exchanges that Nagle's algorithm would only delay).
pub(crate) fn tuned(info: ConnectionInfo) -> ConnectionInfo {
    let redis = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let tcp = info.tcp_settings().clone().set_nodelay(true);
    info.set_redis_settings(redis).set_tcp_settings(tcp)
}

/// A lazily connecting, reconnecting manager for one server, its pushes going to
/// `dispatch`. One reconnection attempt per command, so a command waiting for it is
/// bounded by the connect timeout plus the command timeout (redis-rs does not count the
/// wait for a reconnection against the response timeout).
pub(super) fn single(
    client: &redis::Client,
    timeouts: Timeouts,
    dispatch: Option<Dispatch>,
) -> RedisResult<ConnectionManager> {
    let mut config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeouts.connect))
        .set_response_timeout(Some(timeouts.command))
        .set_number_of_retries(0);
    if let Some(dispatch) = dispatch {
        config = config
            .set_push_sender(move |push| {
                dispatch.push(push);
                Ok::<(), std::convert::Infallible>(())
            })
            .set_automatic_resubscription();
    }
    ConnectionManager::new_lazy_with_config(client.clone(), config)
}

/// A cluster client; with `dispatch`, one for sharded subscriptions (RESP3, pushes to
/// `dispatch`), else one for commands. Every timeout is finite: redis-rs's defaults wait
/// forever for a paused node.
pub(super) fn cluster(
    nodes: &[ConnectionInfo],
    tls: &Tls,
    timeouts: Timeouts,
    dispatch: Option<Dispatch>,
) -> RedisResult<ClusterClient> {
    let mut builder = ClusterClientBuilder::new(nodes.to_vec())
        .connection_timeout(timeouts.connect)
        .response_timeout(timeouts.command)
        .overall_response_timeout(Some(timeouts.command))
        .retries(3)
        .min_retry_wait(10)
        .max_retry_wait(millis(timeouts.command / 4))
        .tcp_settings(TcpSettings::default().set_nodelay(true));
    #[cfg(feature = "tls-rustls")]
    if let Some(certificates) = &tls.certificates {
        builder = builder.certs(certificates.clone());
    }
    let _ = tls;
    if let Some(dispatch) = dispatch {
        builder = builder
            .use_protocol(ProtocolVersion::RESP3)
            .push_sender(move |push| {
                dispatch.push(push);
                Ok::<(), std::convert::Infallible>(())
            });
    }
    builder.build()
}

/// A cluster connection, bounded by twice the connect timeout (it asks a node for the
/// slot map, then connects to the masters).
pub(super) async fn cluster_connection(
    client: &ClusterClient,
    timeouts: Timeouts,
) -> RedisResult<ClusterConnection> {
    let limit = timeouts.connect.saturating_mul(2);
    match tokio::time::timeout(limit, client.get_async_connection()).await {
        Ok(connection) => connection,
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no cluster connection within {limit:?}"),
        ))),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}
