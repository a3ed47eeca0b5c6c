//! The Redis Cluster backend on a private cluster (3 masters, 3 replicas, node timeout
//! 1 s): exclusion across processes over every master, first-come first-served hand-offs
//! on sharded pub/sub that stay in one shard, and failover, a killed master and slot
//! migration in the middle of a run. (The contract suite runs on the cluster too.)

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lock_runtime::testing::{RedisCluster, RedisServer, key_slot};
use lock_runtime::{LockError, Locker};
use lock_tests_integration::Counter;

const WORKER: &str = env!("CARGO_BIN_EXE_lock-worker");

/// `count` lock names on each master (by the slot of their key, `lock:{name}`).
fn names_on_every_master(cluster: &RedisCluster, prefix: &str, count: usize) -> Vec<Vec<String>> {
    let masters = cluster.masters().unwrap();
    let mut names: Vec<Vec<String>> = vec![Vec::new(); masters.len()];
    for index in 0.. {
        if names.iter().all(|on| on.len() == count) {
            break;
        }
        let name = format!("{prefix}{index}");
        let owner = cluster.master_for_key(format!("lock:{{{name}}}")).unwrap();
        let at = masters
            .iter()
            .position(|master| master.index == owner)
            .unwrap();
        if names[at].len() < count {
            names[at].push(name);
        }
    }
    names
}

fn node_query<T: redis::FromRedisValue>(
    cluster: &RedisCluster,
    node: usize,
    command: &redis::Cmd,
) -> T {
    cluster.node(node).unwrap().query(command).unwrap()
}

/// Three processes, locks on every master: every counter exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_stay_exclusive_on_locks_over_every_master() {
    const SECTIONS: usize = 90;
    let cluster = RedisCluster::start().unwrap();
    let locks: Vec<String> = names_on_every_master(&cluster, "spread:", 2)
        .into_iter()
        .flatten()
        .collect();
    let workers: Vec<_> = (0..3)
        .map(|_| {
            Command::new(WORKER)
                .args(["cluster-count", &locks.join(","), &SECTIONS.to_string()])
                .env("REDIS_CLUSTER_URLS", cluster.urls().join(","))
                .env_remove("REDIS_URL")
                .env_remove("REDIS_URLS")
                .spawn()
                .unwrap()
        })
        .collect();
    for mut worker in workers {
        let status = tokio::task::spawn_blocking(move || worker.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "a worker failed: {status}");
    }
    for lock in &locks {
        let mut counter = Counter::cluster(&cluster.urls(), &format!("counter:{{{lock}}}")).await;
        assert_eq!(
            counter.get().await as usize,
            3 * SECTIONS / locks.len(),
            "{lock}"
        );
    }
}

/// Eight waiters on one lock are served in arrival order by hand-offs on sharded pub/sub
/// (a 10 s poll interval could not serve them in time), and only the lock's shard hears
/// the messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_offs_reach_eight_waiters_in_order_on_one_shard() {
    let cluster = RedisCluster::start().unwrap();
    let name = "fifo";
    let owner = cluster.master_for_key("lock:{fifo}").unwrap();
    let locker = |poll: Duration| {
        Locker::builder()
            .poll_interval(poll)
            .cluster(cluster.urls())
            .unwrap()
    };
    let holder = locker(Duration::from_secs(1))
        .lock(name)
        .acquire()
        .await
        .unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for arrival in 0..8 {
        let locker = locker(Duration::from_secs(10));
        let order = order.clone();
        waiters.push(tokio::spawn(async move {
            let guard = locker
                .lock(name)
                .wait(Duration::from_secs(30))
                .acquire()
                .await
                .unwrap();
            order.lock().unwrap().push(arrival);
            assert!(guard.release().await.unwrap());
        }));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let released_at = Instant::now();
    assert!(holder.release().await.unwrap());
    for waiter in waiters {
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("a waiter was never served")
            .unwrap();
    }
    let took = released_at.elapsed();
    assert_eq!(*order.lock().unwrap(), (0..8).collect::<Vec<_>>());
    assert!(
        took < Duration::from_secs(8),
        "8 hand-offs took {took:?}: woken by polling"
    );

    // Only the lock's shard published and had subscribers.
    let channel = "lock:{fifo}:released";
    for node in 0..cluster.nodes().len() {
        let stats: String = node_query(&cluster, node, redis::cmd("INFO").arg("commandstats"));
        let published = stats
            .lines()
            .any(|line| line.starts_with("cmdstat_spublish:"));
        let same_shard = node == owner || cluster.replicas_of(owner).unwrap().contains(&node);
        assert!(
            published == (node == owner),
            "node {node} (owner {owner}) published: {published}"
        );
        // Over the cluster bus: no broadcast publish at all, and shard messages only
        // within the lock's shard.
        let info: String = node_query(&cluster, node, &redis::cmd("CLUSTER").arg("INFO").clone());
        let stat = |name: &str| -> u64 {
            info.lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|value| value.trim().strip_prefix(':'))
                .map_or(0, |value| value.trim().parse().unwrap())
        };
        assert_eq!(
            stat("cluster_stats_messages_publish_received"),
            0,
            "node {node}"
        );
        if !same_shard {
            assert_eq!(
                stat("cluster_stats_messages_publishshard_received"),
                0,
                "node {node}"
            );
            let (_, subscribers): (String, u64) = node_query(
                &cluster,
                node,
                redis::cmd("PUBSUB").arg("SHARDNUMSUB").arg(channel),
            );
            assert_eq!(
                subscribers, 0,
                "node {node} outside the shard has subscribers"
            );
        }
    }
    assert_eq!(key_slot("lock:{fifo}"), key_slot(channel));
}

/// Tasks that take one lock over and over while the cluster is disturbed: every section
/// increments a counter on a separate server (so the disturbance cannot touch it).
struct Run {
    stop: Arc<AtomicBool>,
    sections: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    tasks: tokio::task::JoinSet<()>,
    counter_server: RedisServer,
}

impl Run {
    async fn start(locker: &Locker, name: &'static str, tasks: usize) -> Self {
        let counter_server = RedisServer::start().unwrap();
        let (stop, sections, errors) = (Arc::default(), Arc::default(), Arc::default());
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..tasks {
            let locker = locker.clone();
            let (stop, sections, errors): (Arc<AtomicBool>, Arc<AtomicU64>, Arc<AtomicU64>) = (
                Arc::clone(&stop),
                Arc::clone(&sections),
                Arc::clone(&errors),
            );
            let mut counter = Counter::redis(&counter_server.url(), "counter").await;
            set.spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let wait = Duration::from_secs(3);
                    let request = locker
                        .lock(name)
                        .ttl(Duration::from_millis(800))
                        .auto_renew()
                        .wait(wait);
                    // No waiter is stuck beyond its wait (plus a command's bounds).
                    let acquired =
                        tokio::time::timeout(wait + Duration::from_secs(5), request.acquire())
                            .await
                            .expect("a waiter was stuck beyond its wait");
                    match acquired {
                        Ok(guard) => {
                            counter.unsafe_increment().await;
                            sections.fetch_add(1, Ordering::SeqCst);
                            let _ = guard.release().await;
                        }
                        // Typed errors only: contention, or the cluster unavailable.
                        Err(error) if error.is_contention() || error.is_unavailable() => {
                            errors.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(other) => panic!("an untyped failure: {other:?}"),
                    }
                }
            });
        }
        Self {
            stop,
            sections,
            errors,
            tasks: set,
            counter_server,
        }
    }

    /// Stops the tasks; checks the counter (exclusion) and returns (sections, errors).
    async fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        while let Some(task) = self.tasks.join_next().await {
            task.unwrap();
        }
        let sections = self.sections.load(Ordering::SeqCst);
        let mut counter = Counter::redis(&self.counter_server.url(), "counter").await;
        assert_eq!(counter.get().await, sections, "two sections overlapped");
        (sections, self.errors.load(Ordering::SeqCst))
    }
}

/// `CLUSTER FAILOVER` of the master that owns a held lock, mid-run: no panic, typed errors
/// only, no stuck waiter, exclusion, and the held guard either keeps its lock (renewals go
/// on at the new master) or says it lost it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_failover_mid_run_keeps_every_promise() {
    let cluster = RedisCluster::start().unwrap();
    let locker = Locker::cluster(cluster.urls()).unwrap();
    let owner = cluster.master_for_key("lock:{contended}").unwrap();
    let held = locker
        .lock("held")
        .ttl(Duration::from_secs(1))
        .auto_renew()
        .acquire()
        .await
        .unwrap();
    let held_owner = cluster.master_for_key("lock:{held}").unwrap();
    let run = Run::start(&locker, "contended", 4).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let promoted = cluster.failover(owner).unwrap();
    assert_ne!(promoted, owner);
    if held_owner != owner {
        cluster.failover(held_owner).unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (sections, errors) = run.finish().await;
    eprintln!("manual failover: {sections} sections, {errors} typed errors");
    assert!(sections > 10, "the run made no progress: {sections}");
    held_keeps_or_reports(&held).await;
}

/// A guard across a disturbance keeps its lock (the server says so) or reports it lost.
async fn held_keeps_or_reports(held: &lock_runtime::LockGuard) {
    let kept = match held.is_held().await {
        Ok(true) => !held.is_lost(),
        Ok(false) | Err(_) => false,
    };
    if !kept {
        tokio::time::timeout(Duration::from_secs(3), held.lost())
            .await
            .expect("the guard lost its lock without saying so");
    }
}

/// A master killed mid-run (automatic failover after the node timeout): the same promises,
/// and no two owners hold the killed master's lock with a valid lease each: when a second
/// owner gets it on the promoted replica, the first guard's lease is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_fails_over_without_two_valid_owners() {
    let mut cluster = RedisCluster::start().unwrap();
    let locker = Locker::cluster(cluster.urls()).unwrap();
    let owner = cluster.master_for_key("lock:{contended}").unwrap();
    let first = locker
        .lock("contended")
        .ttl(Duration::from_millis(800))
        .auto_renew()
        .acquire()
        .await
        .unwrap();
    cluster.kill(owner).unwrap();
    let started = Instant::now();
    let second = Locker::cluster(cluster.urls()).unwrap();
    let taken = loop {
        match second
            .lock("contended")
            .wait(Duration::from_secs(2))
            .acquire()
            .await
        {
            Ok(guard) => break guard,
            Err(error) if error.is_contention() || error.is_unavailable() => {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "no failover: {error}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(other) => panic!("an untyped failure: {other:?}"),
        }
    };
    assert!(
        first.is_lost() || first.remaining().is_zero(),
        "two owners with a valid lease: the first has {:?} left",
        first.remaining()
    );
    tokio::time::timeout(Duration::from_secs(3), first.lost())
        .await
        .expect("the first owner never learned that it lost the lock");
    assert!(taken.release().await.unwrap());

    // And the cluster keeps serving with the promised behaviour.
    let run = Run::start(&locker, "after-kill", 3).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (sections, _) = run.finish().await;
    assert!(sections > 5, "no progress after the failover: {sections}");
}

/// The slot of a held lock migrates to another master mid-run: requests follow the
/// redirections, the counter stays exact, and the held lock is renewed where it went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_locks_slot_migrates_mid_run() {
    let cluster = RedisCluster::start().unwrap();
    let locker = Locker::cluster(cluster.urls()).unwrap();
    let held = locker
        .lock("moving")
        .ttl(Duration::from_secs(1))
        .auto_renew()
        .fencing()
        .acquire()
        .await
        .unwrap();
    let run = Run::start(&locker, "moving-contended", 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let slot = key_slot("lock:{moving}");
    let from = cluster.master_of_slot(slot).unwrap();
    let to = cluster
        .masters()
        .unwrap()
        .into_iter()
        .map(|master| master.index)
        .find(|master| *master != from)
        .unwrap();
    cluster.migrate_slot(slot, to).unwrap();
    let contended_slot = key_slot("lock:{moving-contended}");
    let contended_from = cluster.master_of_slot(contended_slot).unwrap();
    let contended_to = if contended_from == to { from } else { to };
    cluster.migrate_slot(contended_slot, contended_to).unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(cluster.master_of_slot(slot).unwrap(), to);
    assert!(
        held.is_held().await.unwrap(),
        "the moved lock was not renewed"
    );
    assert!(!held.is_lost());
    // Fencing continues in the slot's new home.
    let token = held.fencing_token().unwrap();
    assert!(held.release().await.unwrap());
    let next = locker.lock("moving").fencing().acquire().await.unwrap();
    assert!(next.fencing_token().unwrap() > token);
    assert!(next.release().await.unwrap());
    let (sections, errors) = run.finish().await;
    eprintln!("slot migration: {sections} sections, {errors} typed errors");
    assert!(sections > 10, "the run made no progress: {sections}");
}

/// Names with braces keep their whole name as the hash tag on a real cluster: every key
/// and the channel of one lock sit in one slot, so its scripts run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_braces_work_on_a_cluster() {
    let cluster = RedisCluster::start().unwrap();
    let locker = Locker::cluster(cluster.urls()).unwrap();
    for name in ["a}b", "{}", "}{", "x{y}z", "100%"] {
        let guard = locker.lock(name).fencing().acquire().await.unwrap();
        let waiter = locker.lock(name).wait(Duration::from_secs(5));
        let waiting = tokio::spawn(waiter.acquire());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(guard.release().await.unwrap(), "{name}");
        let next: Result<_, LockError> = waiting.await.unwrap();
        assert!(next.unwrap().release().await.unwrap(), "{name}");
    }
}

/// A waiter subscribed before its lock's master failed over still hears the release: the
/// server dropped the sharded subscription, and it was renewed at the new master (a 10 s
/// poll interval could not explain the wake-up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_hear_hand_offs_after_a_failover() {
    let cluster = RedisCluster::start().unwrap();
    let owner = cluster.master_for_key("lock:{across}").unwrap();
    let holder = Locker::cluster(cluster.urls()).unwrap();
    let guard = holder
        .lock("across")
        .ttl(Duration::from_secs(30))
        .acquire()
        .await
        .unwrap();
    let waiting = Locker::builder()
        .poll_interval(Duration::from_secs(10))
        .cluster(cluster.urls())
        .unwrap();
    let waiter = tokio::spawn(async move {
        let guard = waiting
            .lock("across")
            .wait(Duration::from_secs(40))
            .acquire()
            .await
            .unwrap();
        let got_it = Instant::now();
        assert!(guard.release().await.unwrap());
        got_it
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.failover(owner).unwrap();
    // Long enough for the renewed subscription; far shorter than the poll interval.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let released_at = Instant::now();
    assert!(guard.release().await.unwrap());
    let delay = waiter.await.unwrap().duration_since(released_at);
    assert!(
        delay < Duration::from_secs(4),
        "woken {delay:?} after the release: the subscription was not renewed"
    );
}
