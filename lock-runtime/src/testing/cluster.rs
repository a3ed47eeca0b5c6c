//! [`RedisCluster`]: 3 masters and 3 replicas, each a private [`RedisServer`].

use std::ops::RangeInclusive;
use std::process::Command;
use std::time::Duration;
use std::{fmt, fs, io};

use super::redis::Mode;
use super::{
    RedisServer, info_field, redis_cli_binary, run_with_limit, scratch_dir, tail, wait_for,
    with_logs,
};

/// The number of hash slots of a Redis Cluster.
const SLOTS: u32 = 16384;
const NODES: usize = 6;
/// `cluster-node-timeout`: how long a node may be unreachable before it counts as failing.
const NODE_TIMEOUT_MS: u32 = 1000;
/// How long the cluster has to agree after a change (creation, failover, migration).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts at a manual failover, and how long to wait for each (Redis gives up after 5 s).
const FAILOVER_ATTEMPTS: usize = 3;
const FAILOVER_WAIT: Duration = Duration::from_secs(6);
/// Attempts at creating a whole cluster before giving up.
const CREATE_ATTEMPTS: usize = 2;

/// A private Redis Cluster on free loopback ports: 3 masters with a replica each, every
/// process stopped by its PID on drop.
///
/// Nodes are numbered `0..6` for the cluster's life; their roles change with failovers,
/// so ask [`topology`](Self::topology), [`masters`](Self::masters) or
/// [`master_of_slot`](Self::master_of_slot) rather than assuming one.
///
/// ```no_run
/// use lock_runtime::testing::{RedisCluster, key_slot};
///
/// let cluster = RedisCluster::start()?;
/// let urls = cluster.urls(); // seed nodes for a cluster client
/// let master = cluster.master_of_slot(key_slot("lock:{a}"))?;
/// let promoted = cluster.failover(master)?; // its replica is now the master
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    ids: Vec<String>,
    dir: std::path::PathBuf,
}

/// A node's role in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Serves slots (possibly none, after migrating them all away).
    Master,
    /// Replicates a master.
    Replica,
}

/// One running node as it sees itself (from its `CLUSTER NODES`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// Its number in the [`RedisCluster`] (`0..6`).
    pub index: usize,
    /// Its cluster node id.
    pub id: String,
    /// Its client port on 127.0.0.1.
    pub port: u16,
    /// `redis://127.0.0.1:{port}`.
    pub url: String,
    /// Master or replica.
    pub role: Role,
    /// The number of the master it replicates, for a replica.
    pub master: Option<usize>,
    /// The slots it serves, for a master.
    pub slots: Vec<RangeInclusive<u16>>,
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone)]
struct NodeLine {
    id: String,
    flags: Vec<String>,
    master: Option<String>,
    epoch: u64,
    slots: Vec<(u16, u16)>,
}

impl NodeLine {
    fn parse(line: &str) -> Option<Self> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            return None;
        }
        let slots = fields[8..]
            .iter()
            // `[slot->-id]` and `[slot-<-id]` mark a migration in progress, not ownership.
            .filter(|field| !field.starts_with('['))
            .map(|field| match field.split_once('-') {
                Some((start, end)) => Some((start.parse().ok()?, end.parse().ok()?)),
                None => field.parse().ok().map(|slot| (slot, slot)),
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            id: fields[0].to_owned(),
            flags: fields[2].split(',').map(str::to_owned).collect(),
            master: (fields[3] != "-").then(|| fields[3].to_owned()),
            epoch: fields[6].parse().ok()?,
            slots,
        })
    }

    fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    fn is_healthy(&self) -> bool {
        !["fail", "fail?", "handshake", "noaddr"]
            .iter()
            .any(|flag| self.has(flag))
    }
}

impl RedisCluster {
    /// Starts 6 nodes, creates the cluster with `redis-cli --cluster create
    /// --cluster-replicas 1`, and waits until every node says `cluster_state:ok`, all agree
    /// on who serves which slots, and every replica is in sync.
    ///
    /// Fails with [`io::ErrorKind::NotFound`] when `redis-server` or `redis-cli` is
    /// missing, and with every node's log when the cluster does not come up (after a
    /// second try).
    pub fn start() -> io::Result<Self> {
        let mut last_error = None;
        for _ in 0..CREATE_ATTEMPTS {
            match Self::try_start() {
                Ok(cluster) => return Ok(cluster),
                Err(error) if error.kind() == io::ErrorKind::NotFound => return Err(error),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no cluster")))
    }

    fn try_start() -> io::Result<Self> {
        let dir = scratch_dir("cluster")?;
        let mut cluster = Self {
            nodes: Vec::with_capacity(NODES),
            ids: Vec::new(),
            dir,
        };
        for _ in 0..NODES {
            let node = RedisServer::builder()
                .mode(Mode::ClusterNode)
                .kind("cluster-node")
                .arg("--cluster-node-timeout", NODE_TIMEOUT_MS.to_string())
                .start()
                .map_err(|error| with_logs(error, &cluster.logs()))?;
            cluster.nodes.push(node);
        }
        let cli = redis_cli_binary();
        let mut create = Command::new(&cli);
        create
            .args(["--cluster", "create"])
            .args(
                cluster
                    .nodes
                    .iter()
                    .map(|n| format!("127.0.0.1:{}", n.port())),
            )
            .args(["--cluster-replicas", "1", "--cluster-yes"]);
        let (status, output) =
            run_with_limit(create, &cluster.dir.join("create.log"), SETTLE_TIMEOUT).map_err(
                |error| match error.kind() {
                    io::ErrorKind::NotFound => super::not_found(
                        cli.as_os_str(),
                        super::REDIS_CLI_ENV,
                        "install redis-cli (`apt-get install -y redis-tools`)",
                    ),
                    _ => with_logs(error, &cluster.logs()),
                },
            )?;
        if !status.success() {
            return Err(cluster.error(&format!(
                "`redis-cli --cluster create` failed ({status}):\n{output}"
            )));
        }
        cluster.ids = cluster
            .nodes
            .iter()
            .map(|node| node.query::<String>(redis::cmd("CLUSTER").arg("MYID")))
            .collect::<io::Result<_>>()
            .map_err(|error| with_logs(error, &cluster.logs()))?;
        cluster.wait_until_healthy(SETTLE_TIMEOUT)?;
        Ok(cluster)
    }

    /// The nodes, numbered as everywhere else here.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Node `index` (an error when there is no such node).
    pub fn node(&self, index: usize) -> io::Result<&RedisServer> {
        self.nodes.get(index).ok_or_else(|| no_node(index))
    }

    fn node_mut(&mut self, index: usize) -> io::Result<&mut RedisServer> {
        self.nodes.get_mut(index).ok_or_else(|| no_node(index))
    }

    /// Every node's URL (`redis://127.0.0.1:{port}`), in node order: seeds for a client.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Node `index`'s cluster node id.
    pub fn node_id(&self, index: usize) -> io::Result<&str> {
        self.ids
            .get(index)
            .map(String::as_str)
            .ok_or_else(|| no_node(index))
    }

    /// Every node's log tail, for failure messages.
    pub fn logs(&self) -> String {
        let mut logs = String::new();
        for (index, node) in self.nodes.iter().enumerate() {
            logs.push_str(&format!(
                "--- cluster node {index} (port {}) ---\n{}\n",
                node.port(),
                tail(&node.log(), 40)
            ));
        }
        logs
    }

    fn error(&self, message: &str) -> io::Error {
        io::Error::other(format!("{message}\n{}", self.logs()))
    }

    /// Running and not paused.
    fn is_live(&self, index: usize) -> bool {
        self.nodes
            .get(index)
            .is_some_and(|node| node.is_running() && !node.is_paused())
    }

    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&index| self.is_live(index))
    }

    fn index_of(&self, id: &str) -> Option<usize> {
        self.ids.iter().position(|known| known == id)
    }

    /// Node `index`'s `CLUSTER NODES`.
    fn view(&self, index: usize) -> io::Result<Vec<NodeLine>> {
        let nodes: String = self.nodes[index].query(redis::cmd("CLUSTER").arg("NODES"))?;
        Ok(nodes.lines().filter_map(NodeLine::parse).collect())
    }

    /// How node `index` sees itself.
    fn own_line(&self, index: usize) -> io::Result<NodeLine> {
        self.view(index)?
            .into_iter()
            .find(|line| line.has("myself"))
            .ok_or_else(|| io::Error::other(format!("node {index} does not list itself")))
    }

    /// Every running, unpaused node as it sees itself.
    pub fn topology(&self) -> io::Result<Vec<ClusterNode>> {
        self.live()
            .map(|index| {
                let line = self.own_line(index)?;
                Ok(ClusterNode {
                    index,
                    id: line.id.clone(),
                    port: self.nodes[index].port(),
                    url: self.nodes[index].url(),
                    role: if line.has("master") {
                        Role::Master
                    } else {
                        Role::Replica
                    },
                    master: line.master.as_deref().and_then(|id| self.index_of(id)),
                    slots: line.slots.iter().map(|&(from, to)| from..=to).collect(),
                })
            })
            .collect()
    }

    /// The running, unpaused masters (as they see themselves).
    pub fn masters(&self) -> io::Result<Vec<ClusterNode>> {
        let mut topology = self.topology()?;
        topology.retain(|node| node.role == Role::Master);
        Ok(topology)
    }

    /// The running, unpaused replicas of master `master`.
    pub fn replicas_of(&self, master: usize) -> io::Result<Vec<usize>> {
        Ok(self
            .topology()?
            .into_iter()
            .filter(|node| node.role == Role::Replica && node.master == Some(master))
            .map(|node| node.index)
            .collect())
    }

    /// The running master that serves `slot` (the newest claim when two masters claim it,
    /// as Redis itself decides).
    pub fn master_of_slot(&self, slot: u16) -> io::Result<usize> {
        let mut owner: Option<(u64, usize)> = None;
        for index in self.live() {
            let line = self.own_line(index)?;
            let serves = line.has("master")
                && line
                    .slots
                    .iter()
                    .any(|&(from, to)| (from..=to).contains(&slot));
            if serves && owner.is_none_or(|(epoch, _)| line.epoch > epoch) {
                owner = Some((line.epoch, index));
            }
        }
        owner
            .map(|(_, index)| index)
            .ok_or_else(|| io::Error::other(format!("no running master serves slot {slot}")))
    }

    /// The running master that serves `key`'s slot.
    pub fn master_for_key(&self, key: impl AsRef<[u8]>) -> io::Result<usize> {
        self.master_of_slot(key_slot(key))
    }

    /// Kills node `index` with SIGKILL. Its replica takes over after the node timeout
    /// (1 s) and an election: [`wait_until_healthy`](Self::wait_until_healthy) waits
    /// for that.
    pub fn kill(&mut self, index: usize) -> io::Result<()> {
        self.node_mut(index)?.stop();
        Ok(())
    }

    /// Freezes node `index` with SIGSTOP.
    pub fn pause(&self, index: usize) -> io::Result<()> {
        self.node(index)?.pause()
    }

    /// Thaws node `index`.
    pub fn resume(&self, index: usize) -> io::Result<()> {
        self.node(index)?.resume()
    }

    /// Starts node `index` again on its ports, empty but with its `nodes.conf`: it
    /// rejoins with its old identity (as a replica, if it was failed over meanwhile).
    /// [`wait_until_healthy`](Self::wait_until_healthy) waits until the others agree.
    pub fn restart(&mut self, index: usize) -> io::Result<()> {
        self.node_mut(index)?.restart()
    }

    /// Promotes a replica of master `master` with `CLUSTER FAILOVER` (`FORCE` when the
    /// master is killed or paused) and waits until the roles changed and every running
    /// node agrees; returns the new master's number.
    pub fn failover(&self, master: usize) -> io::Result<usize> {
        self.node(master)?;
        let replica = *self
            .replicas_of(master)?
            .first()
            .ok_or_else(|| self.error(&format!("master {master} has no running replica")))?;
        let master_alive = self.is_live(master);
        let mut command = redis::cmd("CLUSTER");
        command.arg("FAILOVER");
        if !master_alive {
            command.arg("FORCE");
        }
        let promoted = || -> io::Result<bool> {
            Ok(self.role(replica)? == "master"
                && (!master_alive || self.role(master)? == "slave")
                && self.is_healthy()?)
        };
        // Redis gives up a manual failover that has not finished after 5 s (a busy
        // machine): ask again then, a few times.
        let mut outcome = Ok(());
        for _ in 0..FAILOVER_ATTEMPTS {
            if self.role(replica)? != "master" {
                let () = self.nodes[replica].query(&command)?;
            }
            outcome = wait_for(FAILOVER_WAIT, "the failover did not finish", promoted);
            if outcome.is_ok() {
                break;
            }
        }
        outcome.map_err(|error| with_logs(error, &self.logs()))?;
        Ok(replica)
    }

    fn role(&self, index: usize) -> io::Result<String> {
        let info: String = self.nodes[index].query(redis::cmd("INFO").arg("replication"))?;
        Ok(info_field(&info, "role").unwrap_or_default().to_owned())
    }

    /// Waits until every running, unpaused node says `cluster_state:ok`, sees every
    /// other such node as healthy and in the role (under the master) it claims, all agree
    /// on who serves which slot (all 16384 of them, each by a running node), and every
    /// replica's link to its master is up.
    pub fn wait_until_healthy(&self, limit: Duration) -> io::Result<()> {
        wait_for(limit, "the cluster did not become healthy", || {
            self.is_healthy()
        })
        .map_err(|error| with_logs(error, &self.logs()))
    }

    fn is_healthy(&self) -> io::Result<bool> {
        let mut views = Vec::new();
        for index in self.live() {
            let info: String = self.nodes[index].query(redis::cmd("CLUSTER").arg("INFO"))?;
            if info_field(&info, "cluster_state") != Some("ok") {
                return Ok(false);
            }
            views.push((index, self.view(index)?));
        }
        // How each live node sees itself: every view must agree with it.
        let mut own = Vec::with_capacity(views.len());
        for (index, view) in &views {
            match view.iter().find(|line| line.has("myself")) {
                Some(line) => own.push(line),
                None => return Err(io::Error::other(format!("node {index} lists no myself"))),
            }
        }
        let live_ids: Vec<&str> = own.iter().map(|line| line.id.as_str()).collect();
        let mut agreed: Option<Vec<(u16, u16, &str)>> = None;
        for (index, view) in &views {
            // Every live node known, healthy, and in the role (and under the master) it
            // claims: a master ignores a manual failover from a replica it does not know.
            let agrees = own.iter().all(|me| {
                view.iter().any(|line| {
                    line.id == me.id
                        && line.is_healthy()
                        && line.has("master") == me.has("master")
                        && line.master == me.master
                })
            });
            if !agrees {
                return Ok(false);
            }
            let mut slots: Vec<(u16, u16, &str)> = view
                .iter()
                .filter(|line| line.has("master"))
                .flat_map(|line| {
                    line.slots
                        .iter()
                        .map(|&(from, to)| (from, to, line.id.as_str()))
                })
                .collect();
            slots.sort_unstable();
            let covered: u32 = slots
                .iter()
                .map(|&(from, to, _)| u32::from(to) - u32::from(from) + 1)
                .sum();
            let served_by_live = slots.iter().all(|(_, _, id)| live_ids.contains(id));
            if covered != SLOTS || !served_by_live {
                return Ok(false);
            }
            match &agreed {
                Some(agreed) if *agreed != slots => return Ok(false),
                Some(_) => {}
                None => agreed = Some(slots),
            }
            if view
                .iter()
                .any(|line| line.has("myself") && line.has("slave"))
            {
                let replication: String =
                    self.nodes[*index].query(redis::cmd("INFO").arg("replication"))?;
                if info_field(&replication, "master_link_status") != Some("up") {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Moves `slot` to master `to` while keys stay readable: `CLUSTER SETSLOT ...
    /// IMPORTING/MIGRATING`, `MIGRATE` of every key, then `CLUSTER SETSLOT ... NODE` on
    /// every running master, and waits until every running node agrees.
    pub fn migrate_slot(&self, slot: u16, to: usize) -> io::Result<()> {
        match self.begin_slot_migration(slot, to)? {
            Some(migration) => migration.finish(self),
            None => Ok(()),
        }
    }

    /// Starts moving `slot` to master `to` and stops halfway, with the slot `MIGRATING`
    /// on its master and `IMPORTING` on `to` and no key moved yet (clients get `ASK`
    /// redirections for keys not on the source any more). `None` when `to` already serves
    /// it.
    pub fn begin_slot_migration(&self, slot: u16, to: usize) -> io::Result<Option<SlotMigration>> {
        self.node(to)?;
        let from = self.master_of_slot(slot)?;
        if from == to {
            return Ok(None);
        }
        let () = self.nodes[to].query(
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("IMPORTING")
                .arg(&self.ids[from]),
        )?;
        let () = self.nodes[from].query(
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("MIGRATING")
                .arg(&self.ids[to]),
        )?;
        Ok(Some(SlotMigration { slot, from, to }))
    }
}

/// A slot halfway from one master to another, from
/// [`RedisCluster::begin_slot_migration`].
#[derive(Debug)]
#[must_use = "the slot stays half-migrated until `finish`"]
pub struct SlotMigration {
    slot: u16,
    from: usize,
    to: usize,
}

impl SlotMigration {
    /// The slot being moved.
    pub fn slot(&self) -> u16 {
        self.slot
    }

    /// The master it leaves.
    pub fn from(&self) -> usize {
        self.from
    }

    /// The master it goes to.
    pub fn to(&self) -> usize {
        self.to
    }

    /// Moves every key now in the slot with `MIGRATE`; returns how many.
    pub fn move_keys(&self, cluster: &RedisCluster) -> io::Result<usize> {
        let source = &cluster.nodes[self.from];
        let target_port = cluster.nodes[self.to].port();
        let mut moved = 0;
        loop {
            let keys: Vec<Vec<u8>> = source.query(
                redis::cmd("CLUSTER")
                    .arg("GETKEYSINSLOT")
                    .arg(self.slot)
                    .arg(100),
            )?;
            if keys.is_empty() {
                return Ok(moved);
            }
            let () = source.query(
                redis::cmd("MIGRATE")
                    .arg("127.0.0.1")
                    .arg(target_port)
                    .arg("")
                    .arg(0)
                    .arg(5000)
                    .arg("REPLACE")
                    .arg("KEYS")
                    .arg(&keys),
            )?;
            moved += keys.len();
        }
    }

    /// Moves the keys left, gives the slot to the new master on every running master, and
    /// waits until every running node agrees.
    pub fn finish(self, cluster: &RedisCluster) -> io::Result<()> {
        self.move_keys(cluster)?;
        let mut order = vec![self.to, self.from];
        order.extend(
            cluster
                .masters()?
                .into_iter()
                .map(|node| node.index)
                .filter(|&index| index != self.to && index != self.from),
        );
        for index in order {
            let () = cluster.nodes[index].query(
                redis::cmd("CLUSTER")
                    .arg("SETSLOT")
                    .arg(self.slot)
                    .arg("NODE")
                    .arg(&cluster.ids[self.to]),
            )?;
        }
        wait_for(SETTLE_TIMEOUT, "the slot migration did not settle", || {
            for index in cluster.live() {
                let serves = cluster.view(index)?.iter().any(|line| {
                    line.id == cluster.ids[self.to]
                        && line
                            .slots
                            .iter()
                            .any(|&(from, to)| (from..=to).contains(&self.slot))
                });
                if !serves {
                    return Ok(false);
                }
            }
            cluster.is_healthy()
        })
        .map_err(|error| with_logs(error, &cluster.logs()))
    }
}

impl fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCluster")
            .field(
                "ports",
                &self.nodes.iter().map(RedisServer::port).collect::<Vec<_>>(),
            )
            .field("ids", &self.ids)
            .finish()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        // Each node kills its own process when dropped.
        self.nodes.clear();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn no_node(index: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("no cluster node {index}: the nodes are 0 to {}", NODES - 1),
    )
}

/// The hash slot of `key`: CRC16 (XMODEM) of the key, or of its `{hash tag}`, modulo
/// 16384, as `CLUSTER KEYSLOT` computes it.
pub fn key_slot(key: impl AsRef<[u8]>) -> u16 {
    let key = key.as_ref();
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % (SLOTS as u16)
}

fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_slots_match_redis() {
        // Values from `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("{user1000}.following"), key_slot("user1000"));
        assert_eq!(key_slot("foo{}{bar}"), key_slot("foo{}{bar}".as_bytes()));
        assert_eq!(key_slot("foo{{bar}}zap"), key_slot("{bar"));
    }

    #[test]
    fn cluster_nodes_lines_parse() {
        let line = NodeLine::parse(
            "07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004 slave \
             e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected",
        )
        .unwrap();
        assert!(line.has("slave"));
        assert_eq!(
            line.master.as_deref(),
            Some("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca")
        );
        let line = NodeLine::parse(
            "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 \
             1 connected 0-5460 5461 [93->-292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f]",
        )
        .unwrap();
        assert!(line.has("myself") && line.has("master"));
        assert_eq!(line.slots, vec![(0, 5460), (5461, 5461)]);
        assert_eq!(line.epoch, 1);
        assert!(NodeLine::parse("garbage").is_none());
    }
}
