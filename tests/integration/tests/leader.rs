//! Leader election (`Locker::leader`): the contract on every backend that elects (one
//! server, a Cluster, Valkey, memory), and three processes whose leader is SIGKILLed,
//! SIGSTOPped or resigns, 20 times: at every instant at most one process believes it
//! leads with a valid lease (checked from outside, by the epochs and belief intervals
//! written to a store that rejects stale epochs), epochs strictly increase, a killed
//! leader is replaced within its lease + 1 s and a resigning one within 50 ms.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lock_runtime::testing::RedisServer;
use lock_runtime::{LeaderChange, LeaderState, LockError, Locker};
use lock_tests_integration::{Fixture, KillOnDrop, contract, raw_connection};

contract!(
    one_leader_at_a_time_with_growing_epochs,
    a_resigning_leader_hands_over_to_the_first_campaigner,
    a_watch_sees_elections_resignations_and_the_end_of_a_lease,
    a_campaign_with_a_wait_gives_up,
);

async fn one_leader_at_a_time_with_growing_epochs(fx: Fixture) {
    let first = fx.locker.leader("scheduler").await.unwrap();
    assert!(first.is_leader());
    assert_eq!(first.name(), "scheduler");
    // Two more campaigners (other tasks: other owners) wait.
    let mut campaigns = Vec::new();
    for _ in 0..2 {
        let locker = fx.another_locker();
        campaigns.push(tokio::spawn(
            async move { locker.leader("scheduler").await },
        ));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(campaigns.iter().all(|campaign| !campaign.is_finished()));
    let mut epochs = vec![first.epoch()];
    assert!(first.resign().await.unwrap());
    // Each leader in turn resigns; exactly one campaign is elected each time.
    for _ in 0..2 {
        let mut elected = None;
        while elected.is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if let Some(index) = campaigns.iter().position(|c| c.is_finished()) {
                elected = Some(campaigns.remove(index).await.unwrap().unwrap());
            }
        }
        let leader = elected.unwrap();
        assert!(leader.is_leader());
        assert!(leader.epoch() > *epochs.last().unwrap(), "{epochs:?}");
        epochs.push(leader.epoch());
        assert!(leader.resign().await.unwrap());
    }
    assert!(!fx.locker.is_locked("scheduler").await.unwrap());
}

async fn a_resigning_leader_hands_over_to_the_first_campaigner(fx: Fixture) {
    let leader = fx.locker.leader("handover").await.unwrap();
    let other = fx.another_locker();
    let locker = other.clone();
    let next = tokio::spawn(async move { locker.leader("handover").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let epoch = leader.epoch();
    let handle = leader.handle();
    assert!(leader.resign().await.unwrap());
    assert!(handle.is_lost() || handle.remaining().is_zero());
    let next = next.await.unwrap().unwrap();
    assert!(next.is_leader());
    assert!(next.epoch() > epoch);
    drop(next); // resigns in the background, counted by its own locker
    assert!(other.flush().await);
    assert!(!fx.locker.is_locked("handover").await.unwrap());
}

async fn a_watch_sees_elections_resignations_and_the_end_of_a_lease(fx: Fixture) {
    let mut watch = fx.another_locker().leader("watched").watch().await.unwrap();
    assert_eq!(watch.state(), LeaderState::Vacant);
    let leader = fx.locker.leader("watched").await.unwrap();
    let epoch = leader.epoch();
    let change = tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .expect("heard")
        .unwrap();
    assert_eq!(change, LeaderChange::Elected { epoch });
    assert_eq!(watch.state(), LeaderState::Led { epoch: Some(epoch) });
    assert!(leader.resign().await.unwrap());
    let change = tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .expect("heard")
        .unwrap();
    assert_eq!(change, LeaderChange::Vacant);
    // A leader whose lock vanishes announces nothing (as a dead one, whose lease ran
    // out): the watch sees it when it looks at the lease's end. (Memory: no outside.)
    let leader = fx
        .locker
        .leader("watched")
        .ttl(Duration::from_millis(600))
        .await
        .unwrap();
    let epoch = leader.epoch();
    let change = tokio::time::timeout(Duration::from_secs(5), watch.changed()).await;
    assert_eq!(
        change.expect("heard").unwrap(),
        LeaderChange::Elected { epoch }
    );
    if delete(&fx, "lock:{watched}").await {
        let ended = tokio::time::timeout(Duration::from_secs(5), watch.changed()).await;
        assert_eq!(
            ended.expect("the lease ended").unwrap(),
            LeaderChange::Vacant
        );
        let lost = tokio::time::timeout(Duration::from_secs(5), leader.lost()).await;
        assert!(lost.is_ok(), "the leader learns it too");
    }
}

/// Deletes `key` from outside the library; `false` on the memory backend.
async fn delete(fx: &Fixture, key: &str) -> bool {
    let deleted: i64 = match (&fx.server, &fx.cluster) {
        (Some(server), _) => {
            let mut redis = raw_connection(&server.url()).await;
            redis::cmd("DEL")
                .arg(key)
                .query_async(&mut redis)
                .await
                .unwrap()
        }
        (None, Some(cluster)) => {
            let client = redis::cluster::ClusterClient::new(cluster.urls()).unwrap();
            let mut redis = client.get_async_connection().await.unwrap();
            redis::cmd("DEL")
                .arg(key)
                .query_async(&mut redis)
                .await
                .unwrap()
        }
        (None, None) => return false,
    };
    assert_eq!(deleted, 1, "{key}");
    true
}

async fn a_campaign_with_a_wait_gives_up(fx: Fixture) {
    let leader = fx.locker.leader("patience").await.unwrap();
    let locker = fx.another_locker();
    let error = tokio::spawn(async move {
        locker
            .leader("patience")
            .wait(Duration::from_millis(200))
            .await
    })
    .await
    .unwrap()
    .unwrap_err();
    assert!(matches!(error, LockError::WaitTimeout { .. }), "{error:?}");
    assert!(leader.is_leader());
    // The same task campaigning again is re-entry, refused at once.
    let again = fx.locker.leader("patience").await.unwrap_err();
    assert!(matches!(again, LockError::Reentrant { .. }), "{again:?}");
    assert!(leader.resign().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_renew_loses_the_leadership_and_is_told() {
    let fx = Fixture::redis();
    let leader = fx
        .locker
        .leader("deleted")
        .ttl(Duration::from_millis(600))
        .await
        .unwrap();
    let lost = leader.lost();
    // Someone deletes the key: the next renewal finds it gone.
    let mut redis = raw_connection(&fx.url()).await;
    let _: i64 = redis::cmd("DEL")
        .arg("lock:{deleted}")
        .query_async(&mut redis)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), lost)
        .await
        .expect("lost() fires");
    assert!(!leader.is_leader());
    assert!(!leader.resign().await.unwrap(), "it no longer led");
}

#[tokio::test]
async fn redlock_refuses_leader_election_and_says_why() {
    let locker = Locker::redlock([
        "redis://127.0.0.1:1",
        "redis://127.0.0.1:2",
        "redis://127.0.0.1:3",
    ])
    .unwrap();
    let error = locker.leader("scheduler").await.unwrap_err();
    assert!(matches!(error, LockError::Config(_)), "{error}");
    assert!(error.to_string().contains("epochs"), "{error}");
}

const WORKER: &str = env!("CARGO_BIN_EXE_lock-worker");

/// One line of a leader process.
#[derive(Debug)]
struct Said {
    pid: u32,
    what: String,
    epoch: u64,
    at_us: u64,
}

fn wall_us() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap()
}

struct Election {
    url: String,
    store_url: String,
    ttl: Duration,
    processes: BTreeMap<u32, KillOnDrop>,
    said: mpsc::Sender<Said>,
    heard: mpsc::Receiver<Said>,
    log: Vec<Said>,
}

impl Election {
    fn spawn(&mut self) {
        let mut child = Command::new(WORKER)
            .args(["leader", &self.url, "scheduler"])
            .arg(self.ttl.as_millis().to_string())
            .arg(&self.store_url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn lock-worker");
        let pid = child.id();
        let stdout = child.stdout.take().unwrap();
        let said = self.said.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let fields: Vec<&str> = line.split(' ').collect();
                if let [what, epoch, at] = fields[..] {
                    let _ = said.send(Said {
                        pid,
                        what: what.to_owned(),
                        epoch: epoch.parse().unwrap(),
                        at_us: at.parse().unwrap(),
                    });
                }
            }
        });
        self.processes.insert(pid, KillOnDrop(child));
    }

    /// The next line `what` of any process, within `limit`.
    fn next(&mut self, what: &str, limit: Duration) -> &Said {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let said = self
                .heard
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {what} within {limit:?}: {:?}", self.log));
            let found = said.what == what;
            self.log.push(said);
            if found {
                return self.log.last().unwrap();
            }
        }
    }

    fn signal(&self, pid: u32, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

#[test]
fn three_processes_keep_one_leader_through_20_kills_pauses_and_resignations() {
    let server = RedisServer::start().unwrap();
    let store = RedisServer::start().unwrap();
    let ttl = Duration::from_millis(1_000);
    let (said, heard) = mpsc::channel();
    let mut election = Election {
        url: server.url(),
        store_url: store.url(),
        ttl,
        processes: BTreeMap::new(),
        said,
        heard,
        log: Vec::new(),
    };
    // A follower in this process watches the election throughout.
    let (changes, watched) = mpsc::channel();
    let (stop_watching, stop) = tokio::sync::oneshot::channel::<()>();
    let watcher = {
        let url = server.url();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async move {
                let locker = Locker::redis(&url).unwrap();
                let mut watch = locker.leader("scheduler").watch().await.unwrap();
                assert_eq!(watch.state(), LeaderState::Vacant);
                changes.send(None).unwrap();
                tokio::pin!(stop);
                loop {
                    tokio::select! {
                        _ = &mut stop => return,
                        change = watch.changed() => changes.send(Some(change.unwrap())).unwrap(),
                    }
                }
            });
        })
    };
    assert_eq!(watched.recv().unwrap(), None, "the watch listens");
    for _ in 0..3 {
        election.spawn();
    }
    let mut leader = election.next("ELECTED", Duration::from_secs(10)).pid;
    let (mut kills, mut pauses, mut resignations) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..20 {
        // The leader leads (and writes) a while first.
        std::thread::sleep(Duration::from_millis(150));
        let before = election.log.len();
        match round % 3 {
            0 => {
                let at = wall_us();
                election.processes.remove(&leader); // SIGKILL, reaped
                let next = election.next("ELECTED", ttl + Duration::from_secs(3));
                assert_ne!(next.pid, leader);
                kills.push(Duration::from_micros(next.at_us - at));
                leader = next.pid;
                election.spawn();
            }
            1 => {
                election.signal(leader, "-STOP");
                let at = wall_us();
                let next = election.next("ELECTED", ttl + Duration::from_secs(3));
                assert_ne!(next.pid, leader, "elected while the old leader is stopped");
                pauses.push(Duration::from_micros(next.at_us - at));
                let (paused, next) = (leader, next.pid);
                election.signal(paused, "-CONT");
                // Resumed, the old leader learns it lost (its lease ran out while stopped).
                let lost = election.next("LOST", Duration::from_secs(5));
                assert_eq!(lost.pid, paused);
                leader = next;
            }
            _ => {
                let stdin = election
                    .processes
                    .get_mut(&leader)
                    .unwrap()
                    .0
                    .stdin
                    .as_mut()
                    .unwrap();
                writeln!(stdin, "resign").unwrap();
                let next = election.next("ELECTED", Duration::from_secs(5));
                assert_ne!(next.pid, leader);
                let next = (next.pid, next.at_us);
                if !election.log[before..]
                    .iter()
                    .any(|said| said.what == "RESIGNED")
                {
                    election.next("RESIGNED", Duration::from_secs(5));
                }
                let resigned = election.log[before..]
                    .iter()
                    .find(|said| said.what == "RESIGNED")
                    .unwrap();
                assert_eq!(resigned.pid, leader);
                resignations.push(Duration::from_micros(next.1 - resigned.at_us));
                leader = next.0;
            }
        }
    }
    // Let the last leader write a little, then stop everyone.
    std::thread::sleep(Duration::from_millis(100));
    election.processes.clear();
    while let Ok(said) = election.heard.try_recv() {
        election.log.push(said);
    }
    std::thread::sleep(ttl + Duration::from_millis(500));
    stop_watching.send(()).unwrap();
    watcher.join().unwrap();
    let changes: Vec<LeaderChange> = watched.try_iter().flatten().collect();
    eprintln!("takeover after a kill: {kills:?}");
    eprintln!("takeover after a pause: {pauses:?}");
    eprintln!("takeover after resign(): {resignations:?}");

    // Epochs strictly increase, election after election.
    let elected: Vec<u64> = election
        .log
        .iter()
        .filter(|said| said.what == "ELECTED")
        .map(|said| said.epoch)
        .collect();
    assert!(elected.len() > 20, "{elected:?}");
    assert!(
        elected.windows(2).all(|pair| pair[0] < pair[1]),
        "{elected:?}"
    );
    // The watch heard every election, in order, and the end of the last leadership.
    let heard: Vec<u64> = changes
        .iter()
        .filter_map(|change| match change {
            LeaderChange::Elected { epoch } => Some(*epoch),
            _ => None,
        })
        .collect();
    assert_eq!(heard, elected, "{changes:?}");
    assert_eq!(changes.last(), Some(&LeaderChange::Vacant), "{changes:?}");
    for took in &kills {
        assert!(
            *took <= ttl + Duration::from_secs(1),
            "after a kill: {kills:?}"
        );
    }
    for took in &pauses {
        assert!(
            *took <= ttl + Duration::from_secs(1),
            "after a pause: {pauses:?}"
        );
    }
    for took in &resignations {
        assert!(
            *took <= Duration::from_millis(50),
            "after resign(): {resignations:?}"
        );
    }

    // From outside: what each leader wrote while it believed it led with a valid lease.
    let writes: Vec<String> = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut store = raw_connection(&store.url()).await;
        redis::cmd("LRANGE")
            .arg("writes")
            .arg(0)
            .arg(-1)
            .query_async(&mut store)
            .await
            .unwrap()
    });
    // Per epoch: the writer, and from its first check to the end of its belief (its
    // lease's end as it counted it, or its resignation).
    let mut beliefs: BTreeMap<u64, (String, u64, u64)> = BTreeMap::new();
    let mut accepted_epochs = Vec::new();
    for write in &writes {
        let fields: Vec<&str> = write.split(' ').collect();
        let [epoch, pid, sent, until, accepted] = fields[..] else {
            panic!("{write}");
        };
        let (epoch, sent, until): (u64, u64, u64) = (
            epoch.parse().unwrap(),
            sent.parse().unwrap(),
            until.parse().unwrap(),
        );
        if accepted == "1" {
            accepted_epochs.push(epoch);
        }
        let belief = beliefs
            .entry(epoch)
            .or_insert_with(|| (pid.to_owned(), sent, until));
        assert_eq!(belief.0, pid, "one process per epoch");
        belief.1 = belief.1.min(sent);
        belief.2 = belief.2.max(until);
    }
    for said in election.log.iter().filter(|said| said.what == "RESIGNED") {
        if let Some(belief) = beliefs.get_mut(&said.epoch) {
            belief.2 = belief.2.min(said.at_us);
        }
    }
    assert!(
        beliefs.len() > 20,
        "{} epochs wrote: {} writes, elected {elected:?}, log {:?}",
        beliefs.len(),
        writes.len(),
        election.log
    );
    assert!(
        accepted_epochs.windows(2).all(|pair| pair[0] <= pair[1]),
        "the store accepted epochs in order"
    );
    // No two beliefs overlap (1 ms for reading two clocks one after the other).
    let ordered: Vec<_> = beliefs.iter().collect();
    for pair in ordered.windows(2) {
        let ((old, (old_pid, _, old_end)), (new, (new_pid, new_start, _))) = (pair[0], pair[1]);
        assert!(
            *old_end <= new_start + 1_000,
            "epoch {old} (pid {old_pid}) believed it led until {old_end}, \
             epoch {new} (pid {new_pid}) from {new_start}"
        );
    }
}

/// Found by review: an election made while the watch's connection was down was never
/// reported (a look reads only the lease), nor a change of leader (the old epoch stayed).
/// Leaders announce themselves again every third of their lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_learns_elections_it_missed_while_disconnected() {
    let server = RedisServer::start().unwrap();
    let proxy = lock_tests_integration::proxy::Proxy::start(server.port()).await;
    let watcher = Locker::builder()
        .connect_timeout(Duration::from_millis(300))
        .command_timeout(Duration::from_millis(500))
        .redis(&proxy.url())
        .unwrap();
    let mut watch = watcher.leader("blip").watch().await.unwrap();
    let campaigner = Locker::redis(&server.url()).unwrap();
    let ttl = Duration::from_millis(1_500);
    let first = campaigner.leader("blip").ttl(ttl).await.unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(3), watch.changed()).await;
    assert_eq!(
        heard.unwrap().unwrap(),
        LeaderChange::Elected {
            epoch: first.epoch()
        }
    );
    // While the watch is cut off, the leader resigns to another campaigner.
    let other = Locker::redis(&server.url()).unwrap();
    let next = tokio::spawn(async move { other.leader("blip").ttl(ttl).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.cut();
    assert!(first.resign().await.unwrap());
    let second = next.await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.restore();
    // Within a third of the lease (plus reconnecting), the watch hears the new leader.
    let deadline = tokio::time::Instant::now() + ttl + Duration::from_secs(3);
    let mut seen = Vec::new();
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout_at(deadline, watch.changed()).await {
            Ok(Ok(change)) => {
                seen.push(change);
                if change
                    == (LeaderChange::Elected {
                        epoch: second.epoch(),
                    })
                {
                    break;
                }
            }
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(_) => break,
        }
    }
    assert!(
        seen.contains(&LeaderChange::Elected {
            epoch: second.epoch()
        }),
        "the new leader was never reported: {seen:?}, state {:?}",
        watch.state()
    );
    assert_eq!(
        watch.state(),
        LeaderState::Led {
            epoch: Some(second.epoch())
        }
    );
    assert!(second.resign().await.unwrap());
}

/// Found by review: a `changed()` cancelled while it looked lost the vacancy it had just
/// heard of (the next call slept until the old lease's end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_cancelled_while_looking_loses_nothing() {
    let server = RedisServer::start().unwrap();
    let leadership = Locker::redis(&server.url())
        .unwrap()
        .leader("w")
        .ttl(Duration::from_secs(20))
        .await
        .unwrap();
    let mut watch = Locker::builder()
        .command_timeout(Duration::from_millis(500))
        .redis(&server.url())
        .unwrap()
        .leader("w")
        .watch()
        .await
        .unwrap();
    assert_eq!(watch.state(), LeaderState::Led { epoch: None });
    assert!(leadership.resign().await.unwrap());
    tokio::time::sleep(Duration::from_millis(200)).await; // the announcement arrives
    server.pause().unwrap();
    let first = tokio::time::timeout(Duration::from_millis(300), watch.changed()).await;
    server.resume().unwrap();
    assert!(first.is_err(), "cancelled while it looked");
    let second = tokio::time::timeout(Duration::from_secs(3), watch.changed()).await;
    assert!(
        matches!(second, Ok(Ok(LeaderChange::Vacant))),
        "after a cancelled changed(): {second:?}, state {:?}",
        watch.state()
    );
}

/// Found by review: a watch kept listening on the connection of the runtime it began on;
/// used on another runtime after that one ended, it heard nothing.
#[test]
fn a_watch_follows_onto_another_runtime() {
    let server = RedisServer::start().unwrap();
    let locker = Locker::redis(&server.url()).unwrap();
    let first = tokio::runtime::Runtime::new().unwrap();
    let mut watch = first.block_on(locker.leader("moves").watch()).unwrap();
    drop(first); // its connection, and the subscription on it, end here
    let second = tokio::runtime::Runtime::new().unwrap();
    second.block_on(async {
        let campaigner = Locker::redis(&server.url()).unwrap();
        let watching = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(5), watch.changed()).await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let leadership = campaigner.leader("moves").await.unwrap();
        let heard = watching.await.unwrap().expect("heard within 5 s").unwrap();
        assert_eq!(
            heard,
            LeaderChange::Elected {
                epoch: leadership.epoch()
            }
        );
        assert!(leadership.resign().await.unwrap());
    });
}

/// Found by review: a watch on the program's own connection either failed as if the
/// server were down, or subscribed where the locker never hears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_on_the_programs_connection_is_refused_and_says_why() {
    let server = RedisServer::start().unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let manager = redis::aio::ConnectionManager::new(client).await.unwrap();
    let locker = Locker::from_connection(manager);
    let error = locker.leader("own").watch().await.unwrap_err();
    assert!(matches!(error, LockError::Config(_)), "{error:?}");
    assert!(error.to_string().contains("from_connection"), "{error}");
}

/// Found by review: the last watch dropped outside a runtime left its channel subscribed.
#[test]
fn a_watch_dropped_anywhere_unsubscribes() {
    let server = RedisServer::start().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let locker = Locker::redis(&server.url()).unwrap();
    let watch = runtime.block_on(locker.leader("gone").watch()).unwrap();
    let subscribers = || -> i64 {
        let reply: Vec<redis::Value> = server
            .query(redis::cmd("PUBSUB").arg("NUMSUB").arg("lock:{gone}:leader"))
            .unwrap();
        match reply.get(1) {
            Some(redis::Value::Int(count)) => *count,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(subscribers(), 1);
    drop(watch); // on this thread, outside the runtime
    let started = std::time::Instant::now();
    while subscribers() > 0 && started.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(subscribers(), 0, "the channel stayed subscribed");
    drop(runtime);
}
