//! Redis Cluster (issue 18): ours on a local cluster (3 masters, 3 replicas, on the same
//! machine) against ours on the single server, in interleaved rounds: acquire+release
//! latency, hand-off, and 64-task throughput with keys spread over the three masters. The
//! cluster's own floor for throughput comes from `redis-benchmark` in the same rounds:
//! `SET` on random keys with 64 clients, `--cluster` against the masters and plain against
//! the single server. The floor for latency, and the library's floor for throughput, is
//! redis-rs alone in the same rounds: the same two commands as an uncontended pair (`SET
//! NX PX`, then a compare-and-delete script) on a multiplexed connection to the single
//! server and on a `ClusterConnection`.

use std::time::Instant;

use lock_runtime::Locker;
use lock_runtime::testing::RedisCluster;

use crate::report::Figure;
use crate::sides::{BareConnection, Client, Side};
use crate::stats::{Samples, median, micros};
use crate::workloads::{
    Bench, HANDOFF_PAUSE, connection, handoff_round, pairs, pings, ratios, relays, throughput_round,
};

/// The two setups, in the order of every per-setup array here.
const SETUPS: [&str; 2] = ["single", "cluster"];

/// The workload; nothing when the cluster cannot start (a message says why).
pub(crate) async fn cluster(bench: &Bench) -> Vec<Figure> {
    let cluster = match RedisCluster::start() {
        Ok(cluster) => cluster,
        Err(error) => {
            eprintln!("cluster: cannot start a local cluster, skipped: {error}");
            return Vec::new();
        }
    };
    let masters = cluster.masters().expect("the cluster's masters");
    let lockers = [
        Locker::redis(&bench.url).expect("a valid URL"),
        Locker::cluster(cluster.urls()).expect("valid URLs"),
    ];
    let mut clients = Vec::new();
    let mut waiters = Vec::new();
    for locker in &lockers {
        locker.ping().await.expect("ping");
        let client = Client::Ours(locker.clone());
        pairs(&client, "bench:cl:warmup", 500).await;
        clients.push(client);
    }
    for (index, client) in clients.iter().enumerate() {
        let waiter = match index {
            0 => Locker::redis(&bench.url).expect("a valid URL"),
            _ => Locker::cluster(cluster.urls()).expect("valid URLs"),
        };
        waiter.ping().await.expect("ping");
        let waiter = Client::Ours(waiter);
        handoff_round(client, &waiter, Side::Ours, usize::MAX - index, 20).await;
        waiters.push(waiter);
    }
    let mut ping_single = connection(&bench.url).await;
    let mut ping_master = connection(&masters[0].url).await;
    let mut stats = [vec![connection(&bench.url).await], Vec::new()];
    for node in cluster.nodes() {
        stats[1].push(connection(&node.url()).await);
    }
    let bare_cluster = redis::cluster::ClusterClient::new(cluster.urls())
        .expect("valid URLs")
        .get_async_connection()
        .await
        .expect("connect to the cluster");
    let bare_clients = [
        Client::Bare(
            BareConnection::Single(
                redis::Client::open(bench.url.as_str())
                    .expect("a valid URL")
                    .get_multiplexed_async_connection()
                    .await
                    .expect("connect"),
            ),
            Default::default(),
        ),
        Client::Bare(
            BareConnection::Cluster(bare_cluster.clone()),
            Default::default(),
        ),
    ];
    for client in &bare_clients {
        pairs(client, "bench:cl:warmup-bare", 100).await;
    }
    let mut relay = ShardRelay::new(&cluster.urls(), bare_cluster.clone()).await;
    let master_ports: Vec<u16> = masters.iter().map(|master| master.port).collect();
    let single_port = bench
        .url
        .rsplit(':')
        .next()
        .and_then(|port| port.parse::<u16>().ok())
        .expect("the single server's port");

    let per_round = bench.per_round(bench.ops);
    let reps = bench.per_round(bench.handoffs);
    let mut latency: [Vec<f64>; 2] = Default::default();
    let mut handoff: [Vec<f64>; 2] = Default::default();
    let mut rate: [Vec<f64>; 2] = Default::default();
    let mut floor: [Vec<f64>; 2] = Default::default();
    let mut bare_rate: [Vec<f64>; 2] = Default::default();
    let mut bare: [Vec<f64>; 2] = Default::default();
    let (mut rtt_single, mut rtt_master, mut idle_master) = (Vec::new(), Vec::new(), Vec::new());
    let mut relays = Vec::new();
    for round in 0..bench.rounds {
        rtt_single.push(micros(
            pings(&mut ping_single, per_round, None)
                .await
                .percentile(50.0),
        ));
        rtt_master.push(micros(
            pings(&mut ping_master, per_round, None)
                .await
                .percentile(50.0),
        ));
        idle_master.push(micros(
            pings(&mut ping_master, reps.min(100), Some(HANDOFF_PAUSE))
                .await
                .percentile(50.0),
        ));
        relays.push(micros(relay.samples(reps.min(100)).await.percentile(50.0)));
        for offset in 0..SETUPS.len() {
            let index = (round + offset) % SETUPS.len();
            let prefix = format!("bench:cl:lat:{round}");
            let samples = pairs(&clients[index], &prefix, per_round).await;
            latency[index].push(micros(samples.percentile(50.0)));
            let prefix = format!("bench:cl:bare:{round}");
            let samples = pairs(&bare_clients[index], &prefix, per_round).await;
            bare[index].push(micros(samples.percentile(50.0)));
            let samples =
                handoff_round(&clients[index], &waiters[index], Side::Ours, round, reps).await;
            handoff[index].push(micros(samples.percentile(50.0)));
            // Ours and redis-rs alone, first one then the other in turn.
            for turn in 0..2 {
                let (client, rates, what) = match (round + turn) % 2 {
                    0 => (&clients[index], &mut rate[index], "tp"),
                    _ => (&bare_clients[index], &mut bare_rate[index], "bare-tp"),
                };
                let prefix = format!("bench:cl:{what}:{round}");
                let [pairs_per_sec, _, _] =
                    throughput_round(bench, client, &prefix, &mut stats[index]).await;
                rates.push(pairs_per_sec);
            }
            floor[index].push(match index {
                0 => redis_benchmark(&[single_port], bench).await,
                _ => redis_benchmark(&master_ports, bench).await,
            });
        }
    }
    let tp_ratio = ratios(&rate[1], &rate[0]);
    let floor_ratio = ratios(&floor[1], &floor[0]);
    let mut figures = vec![
        Figure::rounds("cluster", "single: PING p50", &rtt_single, "us"),
        Figure::rounds("cluster", "cluster master: PING p50", &rtt_master, "us"),
        Figure::rounds(
            "cluster",
            format!("cluster master: PING p50 after a {HANDOFF_PAUSE:?} pause"),
            &idle_master,
            "us",
        ),
    ];
    for (index, setup) in SETUPS.iter().enumerate() {
        figures.push(
            Figure::rounds(
                "cluster",
                format!("{setup}: acquire+release p50"),
                &latency[index],
                "us",
            )
            .per_rtt(median(&rtt_single)),
        );
    }
    figures.push(
        Figure::rounds(
            "cluster",
            "cluster / single acquire+release (p50)",
            &ratios(&latency[1], &latency[0]),
            "ratio",
        )
        .at_most(1.2),
    );
    for (index, setup) in SETUPS.iter().enumerate() {
        figures.push(Figure::rounds(
            "cluster",
            format!("redis-rs alone, {setup}: SET NX PX + script p50"),
            &bare[index],
            "us",
        ));
    }
    let bare_ratio = ratios(&bare[1], &bare[0]);
    figures.push(Figure::rounds(
        "cluster",
        "redis-rs alone: cluster / single (floor, p50)",
        &bare_ratio,
        "ratio",
    ));
    figures.push(Figure::rounds(
        "cluster",
        "ours cluster/single over redis-rs's (p50)",
        &ratios(&ratios(&latency[1], &latency[0]), &bare_ratio),
        "ratio",
    ));
    for (index, setup) in SETUPS.iter().enumerate() {
        figures.push(
            Figure::rounds(
                "cluster",
                format!("{setup}: hand-off p50"),
                &handoff[index],
                "us",
            )
            .per_rtt(median(&rtt_single)),
        );
    }
    figures.push(
        Figure::rounds(
            "cluster",
            "cluster hand-off p50 / master PING p50",
            &ratios(&handoff[1], &rtt_master),
            "ratio",
        )
        .at_most(2.0),
    );
    figures.push(Figure::rounds(
        "cluster",
        "cluster hand-off p50 / idle master PING p50",
        &ratios(&handoff[1], &idle_master),
        "ratio",
    ));
    figures.push(Figure::rounds(
        "cluster",
        format!(
            "floor: SPUBLISH -> ClusterConnection subscriber, after a {HANDOFF_PAUSE:?} pause, p50"
        ),
        &relays,
        "us",
    ));
    figures.push(Figure::rounds(
        "cluster",
        "floor p50 / idle master PING p50",
        &ratios(&relays, &idle_master),
        "ratio",
    ));
    figures.push(Figure::rounds(
        "cluster",
        "cluster hand-off p50 / floor p50",
        &ratios(&handoff[1], &relays),
        "ratio",
    ));
    for (index, setup) in SETUPS.iter().enumerate() {
        figures.push(Figure::rounds(
            "cluster",
            format!("{setup}: 64 tasks, pairs/s"),
            &rate[index],
            "1/s",
        ));
    }
    figures.push(
        Figure::rounds("cluster", "cluster / single pairs/s", &tp_ratio, "ratio").at_least(1.0),
    );
    for (index, setup) in SETUPS.iter().enumerate() {
        figures.push(Figure::rounds(
            "cluster",
            format!("redis-benchmark SET, 64 clients, {setup}"),
            &floor[index],
            "1/s",
        ));
    }
    figures.push(Figure::rounds(
        "cluster",
        "redis-benchmark cluster / single (floor)",
        &floor_ratio,
        "ratio",
    ));
    figures.push(Figure::rounds(
        "cluster",
        "ours cluster/single over floor's",
        &ratios(&tp_ratio, &floor_ratio),
        "ratio",
    ));
    for (index, setup) in SETUPS.iter().enumerate() {
        figures.push(Figure::rounds(
            "cluster",
            format!("redis-rs alone, {setup}: 64 tasks, pairs/s"),
            &bare_rate[index],
            "1/s",
        ));
    }
    let bare_tp_ratio = ratios(&bare_rate[1], &bare_rate[0]);
    figures.push(Figure::rounds(
        "cluster",
        "redis-rs alone: cluster / single pairs/s (library floor)",
        &bare_tp_ratio,
        "ratio",
    ));
    figures.push(Figure::rounds(
        "cluster",
        "ours cluster/single over redis-rs's",
        &ratios(&tp_ratio, &bare_tp_ratio),
        "ratio",
    ));
    drop(cluster);
    figures
}

/// The least a hand-off on the cluster needs, from idle, with redis-rs alone: one
/// `SPUBLISH` on a `ClusterConnection` to a sharded subscriber on another (RESP3, pushes),
/// timed from the publish to the subscriber's task hearing it.
struct ShardRelay {
    publisher: redis::cluster_async::ClusterConnection,
    heard: tokio::sync::mpsc::UnboundedReceiver<Instant>,
    /// Keeps the subscription's connection alive.
    _subscriber: redis::cluster_async::ClusterConnection,
}

impl ShardRelay {
    const CHANNEL: &str = "bench:{relay}";

    async fn new(urls: &[String], publisher: redis::cluster_async::ClusterConnection) -> Self {
        let (told, heard) = tokio::sync::mpsc::unbounded_channel();
        let mut subscriber = redis::cluster::ClusterClientBuilder::new(urls.to_vec())
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(move |push: redis::PushInfo| {
                if push.kind == redis::PushKind::SMessage {
                    let _ = told.send(Instant::now());
                }
                Ok::<(), std::convert::Infallible>(())
            })
            .build()
            .expect("valid URLs")
            .get_async_connection()
            .await
            .expect("connect to the cluster");
        subscriber
            .ssubscribe(Self::CHANNEL)
            .await
            .expect("SSUBSCRIBE");
        Self {
            publisher,
            heard,
            _subscriber: subscriber,
        }
    }

    /// `reps` relays, each after `HANDOFF_PAUSE`.
    async fn samples(&mut self, reps: u64) -> Samples {
        relays(
            &mut self.publisher,
            redis::cmd("SPUBLISH").arg(Self::CHANNEL).arg("x"),
            &mut self.heard,
            reps,
        )
        .await
    }
}

/// `SET` requests/s of `redis-benchmark` with 64 clients on random keys, against the
/// server at `ports[0]`, or (several ports) the cluster of those masters. 0 when it fails.
async fn redis_benchmark(ports: &[u16], bench: &Bench) -> f64 {
    let requests = (bench.duration.as_secs_f64() * 60_000.0) as u64;
    let mut command = tokio::process::Command::new("redis-benchmark");
    command
        .args(["-h", "127.0.0.1", "-p", &ports[0].to_string()])
        .args(["-c", "64", "-t", "set", "-r", "1000000", "--csv"])
        .args(["-n", &requests.max(1000).to_string()]);
    if ports.len() > 1 {
        command.arg("--cluster");
    }
    let output = match command.output().await {
        Ok(output) if output.status.success() => output,
        Ok(output) => {
            eprintln!(
                "redis-benchmark failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            return 0.0;
        }
        Err(error) => {
            eprintln!("redis-benchmark: {error}");
            return 0.0;
        }
    };
    // `"test","rps",...` then `"SET","81300.81",...`
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find(|line| line.starts_with("\"SET"))
        .and_then(|line| line.split(',').nth(1))
        .and_then(|rps| rps.trim_matches('"').parse().ok())
        .unwrap_or(0.0)
}
