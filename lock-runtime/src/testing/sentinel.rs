//! [`SentinelGroup`]: a master, a replica and 3 sentinels, each a private [`RedisServer`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use std::{fmt, io};

use super::redis::Mode;
use super::{RedisServer, info_field, tail, wait_for, with_logs};

/// The name the sentinels monitor the master under.
const MASTER_NAME: &str = "lock-master";
const SENTINELS: usize = 3;
const QUORUM: usize = 2;
/// How long a master may be unreachable before a sentinel thinks it is down.
const DOWN_AFTER_MS: u32 = 1000;
const FAILOVER_TIMEOUT_MS: u32 = 3000;
/// How long the group has to agree after a change (start, failover).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);

/// A private Sentinel setup on free loopback ports: servers `0` (first the master) and
/// `1` (its replica), watched by 3 sentinels with quorum 2, `down-after-milliseconds`
/// 1000 and `failover-timeout` 3000. Every process is stopped by its PID on drop.
///
/// ```no_run
/// use lock_runtime::testing::SentinelGroup;
///
/// let mut group = SentinelGroup::start()?;
/// let sentinels = group.sentinel_urls(); // for a sentinel client, with group.master_name()
/// let old = group.kill_master()?;
/// let new = group.wait_for_failover(old)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SentinelGroup {
    servers: Vec<RedisServer>,
    sentinels: Vec<RedisServer>,
}

impl SentinelGroup {
    /// Starts the master and its replica, waits until the replica is in sync, starts the
    /// sentinels, and waits until each of them sees the master, the replica and the two
    /// other sentinels.
    pub fn start() -> io::Result<Self> {
        let mut group = Self {
            servers: Vec::with_capacity(2),
            sentinels: Vec::with_capacity(SENTINELS),
        };
        let master = RedisServer::start()?;
        let master_port = master.port().to_string();
        group.servers.push(master);
        let replica = RedisServer::builder()
            .raw_args(["--replicaof", "127.0.0.1", &master_port])
            .start()
            .map_err(|error| with_logs(error, &group.logs()))?;
        group.servers.push(replica);
        wait_for(SETTLE_TIMEOUT, "the replica did not sync", || {
            let info: String = group.servers[1].query(redis::cmd("INFO").arg("replication"))?;
            Ok(info_field(&info, "master_link_status") == Some("up"))
        })
        .map_err(|error| with_logs(error, &group.logs()))?;
        let config = format!(
            "sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} {QUORUM}\n\
             sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n\
             sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n"
        );
        for _ in 0..SENTINELS {
            let sentinel = RedisServer::builder()
                .mode(Mode::Sentinel(config.clone()))
                .kind("sentinel")
                .start()
                .map_err(|error| with_logs(error, &group.logs()))?;
            group.sentinels.push(sentinel);
        }
        wait_for(
            SETTLE_TIMEOUT,
            "the sentinels did not see the master, the replica and each other",
            || group.sentinels_agree(0),
        )
        .map_err(|error| with_logs(error, &group.logs()))?;
        Ok(group)
    }

    /// Whether every running sentinel sees server `master` as an up master, with an up
    /// replica and the other sentinels.
    fn sentinels_agree(&self, master: usize) -> io::Result<bool> {
        let port = self.servers[master].port().to_string();
        for sentinel in self.sentinels.iter().filter(|s| s.is_running()) {
            let fields: Vec<String> =
                sentinel.query(redis::cmd("SENTINEL").arg("MASTER").arg(MASTER_NAME))?;
            let fields = pairs(fields);
            let field = |name: &str| fields.get(name).map(String::as_str);
            let other_sentinels = self.sentinels.iter().filter(|s| s.is_running()).count() - 1;
            if field("port") != Some(&port)
                || field("flags") != Some("master")
                || field("num-slaves").and_then(|n| n.parse::<usize>().ok()) < Some(1)
                || field("num-other-sentinels").and_then(|n| n.parse::<usize>().ok())
                    < Some(other_sentinels)
            {
                return Ok(false);
            }
            let replicas: Vec<Vec<String>> =
                sentinel.query(redis::cmd("SENTINEL").arg("REPLICAS").arg(MASTER_NAME))?;
            let replica_up = replicas.into_iter().map(pairs).any(|replica| {
                replica.get("flags").map(String::as_str) == Some("slave")
                    && replica.get("master-link-status").map(String::as_str) == Some("ok")
            });
            if !replica_up {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The name the sentinels know the master by (`lock-master`).
    pub fn master_name(&self) -> &str {
        MASTER_NAME
    }

    /// The sentinels' URLs (`redis://127.0.0.1:{port}`).
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisServer::url).collect()
    }

    /// The sentinels.
    pub fn sentinels(&self) -> &[RedisServer] {
        &self.sentinels
    }

    /// The two data servers: `0` started as the master, `1` as its replica.
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// The master's address as the first sentinel that answers reports it
    /// (`SENTINEL GET-MASTER-ADDR-BY-NAME`).
    pub fn master_addr(&self) -> io::Result<SocketAddr> {
        let mut last_error = None;
        for sentinel in self
            .sentinels
            .iter()
            .filter(|s| s.is_running() && !s.is_paused())
        {
            match self.master_addr_from(sentinel) {
                Ok(addr) => return Ok(addr),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no sentinel is running")))
    }

    fn master_addr_from(&self, sentinel: &RedisServer) -> io::Result<SocketAddr> {
        let (host, port): (String, u16) = sentinel.query(
            redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(MASTER_NAME),
        )?;
        format!("{host}:{port}")
            .parse()
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
    }

    /// The master's URL, from [`master_addr`](Self::master_addr).
    pub fn master_url(&self) -> io::Result<String> {
        Ok(format!("redis://{}", self.master_addr()?))
    }

    /// Which server ([`servers`](Self::servers)) the sentinels call the master.
    pub fn master_index(&self) -> io::Result<usize> {
        let addr = self.master_addr()?;
        self.servers
            .iter()
            .position(|server| server.port() == addr.port())
            .ok_or_else(|| io::Error::other(format!("the master {addr} is none of ours")))
    }

    /// Kills the current master with SIGKILL; returns its number. The sentinels fail over
    /// to the replica after about 1 s: [`wait_for_failover`](Self::wait_for_failover).
    pub fn kill_master(&mut self) -> io::Result<usize> {
        let master = self.master_index()?;
        self.servers[master].stop();
        Ok(master)
    }

    /// Freezes the current master with SIGSTOP; returns its number.
    pub fn pause_master(&self) -> io::Result<usize> {
        let master = self.master_index()?;
        self.servers[master].pause()?;
        Ok(master)
    }

    /// Thaws server `index` (the sentinels turn a former master into a replica).
    pub fn resume(&self, index: usize) -> io::Result<()> {
        self.servers
            .get(index)
            .ok_or_else(|| no_server(index))?
            .resume()
    }

    /// Starts server `index` again on its port, empty.
    pub fn restart(&mut self, index: usize) -> io::Result<()> {
        self.servers
            .get_mut(index)
            .ok_or_else(|| no_server(index))?
            .restart()
    }

    /// Waits until every running sentinel names another server than `old` as the master
    /// and that server says it is one; returns its number.
    pub fn wait_for_failover(&self, old: usize) -> io::Result<usize> {
        let mut new = None;
        wait_for(SETTLE_TIMEOUT, "the sentinels did not fail over", || {
            let mut masters = self
                .sentinels
                .iter()
                .filter(|s| s.is_running() && !s.is_paused())
                .map(|sentinel| self.master_addr_from(sentinel));
            let Some(first) = masters.next().transpose()? else {
                return Ok(false);
            };
            if !masters.all(|addr| addr.is_ok_and(|addr| addr == first)) {
                return Ok(false);
            }
            let Some(index) = self.servers.iter().position(|s| s.port() == first.port()) else {
                return Ok(false);
            };
            let info: String = self.servers[index].query(redis::cmd("INFO").arg("replication"))?;
            new = Some(index);
            Ok(index != old && info_field(&info, "role") == Some("master"))
        })
        .map_err(|error| with_logs(error, &self.logs()))?;
        new.ok_or_else(|| io::Error::other("no new master"))
    }

    /// Every process's log tail, for failure messages.
    pub fn logs(&self) -> String {
        let mut logs = String::new();
        for (kind, processes) in [("server", &self.servers), ("sentinel", &self.sentinels)] {
            for (index, process) in processes.iter().enumerate() {
                logs.push_str(&format!(
                    "--- {kind} {index} (port {}) ---\n{}\n",
                    process.port(),
                    tail(&process.log(), 40)
                ));
            }
        }
        logs
    }
}

fn no_server(index: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("no server {index}: the servers are 0 and 1"),
    )
}

/// A flat `[name, value, name, value, ...]` reply as a map.
fn pairs(fields: Vec<String>) -> HashMap<String, String> {
    let mut map = HashMap::with_capacity(fields.len() / 2);
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        map.insert(name, value);
    }
    map
}

impl fmt::Debug for SentinelGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ports = |processes: &[RedisServer]| -> Vec<u16> {
            processes.iter().map(RedisServer::port).collect()
        };
        f.debug_struct("SentinelGroup")
            .field("servers", &ports(&self.servers))
            .field("sentinels", &ports(&self.sentinels))
            .finish()
    }
}
