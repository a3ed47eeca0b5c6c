//! `--leader`: the instances elect a leader, and only the leader runs the scheduler. The
//! demo kills the leader half-way; another instance is elected when the dead leader's
//! lease ends and takes the schedule over. Every run is written with the leader's epoch
//! to a store that refuses an epoch older than the newest it has seen, so even a leader
//! paused past its lease cannot write after its successor.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Args;
use lock_examples::{DemoRedis, fail, sleep_until_unix, spawn_self, unix_millis};
use lock_runtime::{LeaderChange, Locker};
use redis::aio::ConnectionManager;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::PERIOD_MS;

/// Where the leader's runs go: `window:instance:epoch`.
pub(crate) const LEADER_RUNS_KEY: &str = "jobs:cleanup:leader-runs";
/// The newest epoch the store accepted.
const STORE_EPOCH_KEY: &str = "jobs:cleanup:epoch";
/// Epoch -> the instance elected with it.
const LEADERS_KEY: &str = "jobs:cleanup:leaders";
/// The election.
const ELECTION: &str = "scheduler:cleanup";
/// The leader's lease: a dead leader is replaced within about this long.
const LEASE: Duration = Duration::from_millis(1_500);

/// Records a run unless a newer leader has written already (its epoch is larger).
static FENCED_RUN: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        "if tonumber(ARGV[1]) < tonumber(redis.call('GET', KEYS[1]) or '0') then return 0 end
         redis.call('SET', KEYS[1], ARGV[1])
         redis.call('RPUSH', KEYS[2], ARGV[2])
         return 1",
    )
});

/// One instance in leader mode (started by the demo).
#[derive(Args, Clone)]
pub(crate) struct LeaderInstance {
    #[arg(long)]
    redis: String,
    #[arg(long)]
    name: String,
    /// Unix time in milliseconds of window 0.
    #[arg(long)]
    epoch: u64,
    #[arg(long)]
    windows: u64,
}

/// An instance: campaign; while leading, run the job once per window; campaign again
/// after losing the leadership. Prints `elected <epoch>` when it wins.
pub(crate) async fn run_leader_instance(instance: LeaderInstance) {
    let connect = async {
        let locker = Locker::redis(&instance.redis)?;
        let redis = ConnectionManager::new(redis::Client::open(instance.redis.as_str())?).await?;
        Ok::<_, Box<dyn std::error::Error>>((locker, redis))
    };
    let (locker, mut redis) = connect
        .await
        .unwrap_or_else(|error| fail(format!("{}: {error}", instance.name)));
    let end = instance.epoch + instance.windows * PERIOD_MS;
    while unix_millis() < end {
        let campaign = locker.leader(ELECTION).ttl(LEASE);
        let leadership = tokio::select! {
            elected = campaign => elected.unwrap_or_else(|error| fail(format!("{}: {error}", instance.name))),
            () = sleep_until_unix(end) => return,
        };
        let epoch = leadership.epoch();
        let _: i64 = redis::cmd("HSET")
            .arg(LEADERS_KEY)
            .arg(epoch)
            .arg(&instance.name)
            .query_async(&mut redis)
            .await
            .unwrap_or_else(|error| fail(error));
        println!("elected {epoch}");
        let lost = leadership.lost();
        tokio::pin!(lost);
        loop {
            // The next window's start on the shared clock.
            let now = unix_millis();
            if now >= end {
                let _ = leadership.resign().await;
                return;
            }
            let window = match now.checked_sub(instance.epoch) {
                Some(since) => since / PERIOD_MS + 1,
                None => 0,
            };
            tokio::select! {
                () = &mut lost => break,
                () = sleep_until_unix(instance.epoch + window * PERIOD_MS) => {}
            }
            if window >= instance.windows {
                continue;
            }
            // The check before each act of leadership; the store checks the epoch too.
            if !leadership.is_leader() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await; // delete expired sessions...
            let run = format!("{window}:{}:{epoch}", instance.name);
            let _: i64 = FENCED_RUN
                .key(STORE_EPOCH_KEY)
                .key(LEADER_RUNS_KEY)
                .arg(epoch)
                .arg(run)
                .invoke_async(&mut redis)
                .await
                .unwrap_or_else(|error| fail(error));
        }
    }
}

/// The demo: three instances elect a leader; the leader is killed half-way; the table
/// shows which instance ran each window, with its epoch.
pub(crate) async fn run_leader_demo(redis: &DemoRedis, instances: usize, windows: u64) {
    println!(
        "scheduled_job --leader: {instances} instances (separate processes) elect one leader, \
         which runs a job every {PERIOD_MS} ms for {windows} windows; the leader is killed \
         after window {}; leases last {LEASE:?}, against {}",
        windows / 2,
        redis.describe()
    );
    let locker = Locker::redis(redis.url()).unwrap_or_else(|error| fail(error));
    let mut connection = ConnectionManager::new(
        redis::Client::open(redis.url()).unwrap_or_else(|error| fail(error)),
    )
    .await
    .unwrap_or_else(|error| fail(format!("cannot reach Redis: {error}")));
    let _: i64 = redis::cmd("DEL")
        .arg(LEADER_RUNS_KEY)
        .arg(STORE_EPOCH_KEY)
        .arg(LEADERS_KEY)
        .query_async(&mut connection)
        .await
        .unwrap_or_else(|error| fail(format!("cannot reach Redis: {error}")));
    let mut watch = locker
        .leader(ELECTION)
        .watch()
        .await
        .unwrap_or_else(|error| fail(error));
    let epoch = unix_millis() + 1_000;
    let mut children = BTreeMap::new();
    for index in 1..=instances {
        let name = format!("instance-{index}");
        let args = [
            "leader-instance".to_owned(),
            format!("--redis={}", redis.url()),
            format!("--name={name}"),
            format!("--epoch={epoch}"),
            format!("--windows={windows}"),
        ];
        let mut child = spawn_self(&args)
            .unwrap_or_else(|error| fail(format!("cannot start an instance: {error}")));
        // Each instance's output is drained, so none blocks on a full pipe.
        let stdout = child.stdout.take().expect("piped");
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(_)) = lines.next_line().await {}
        });
        children.insert(name, child);
    }
    let kill_at = epoch + (windows / 2) * PERIOD_MS + PERIOD_MS / 2;
    let end = epoch + windows * PERIOD_MS + PERIOD_MS / 2;
    let mut killed = None;
    loop {
        let change = tokio::select! {
            change = watch.changed() => change.unwrap_or_else(|error| fail(error)),
            () = sleep_until_unix(kill_at), if killed.is_none() => {
                let leader = leader_now(&mut connection, &watch).await;
                let child = children.get_mut(&leader).expect("a known instance");
                child.start_kill().unwrap_or_else(|error| fail(error));
                println!("{:>6} ms  killed {leader} (SIGKILL), the leader", unix_millis().saturating_sub(epoch));
                killed = Some(leader);
                continue;
            }
            () = sleep_until_unix(end) => break,
        };
        let at = unix_millis().saturating_sub(epoch);
        match change {
            LeaderChange::Elected { epoch } => {
                let name = instance_of(&mut connection, epoch).await;
                println!("{at:>6} ms  {name} elected, epoch {epoch}");
            }
            LeaderChange::Vacant => println!("{at:>6} ms  no leader: the leader's lease ran out"),
            _ => {}
        }
    }
    for (_, mut child) in children {
        let _ = child.wait().await;
    }
    let runs: Vec<String> = redis::cmd("LRANGE")
        .arg(LEADER_RUNS_KEY)
        .arg(0)
        .arg(-1)
        .query_async(&mut connection)
        .await
        .unwrap_or_else(|error| fail(format!("cannot read the runs: {error}")));
    println!();
    println!("{:<8} {:<12} epoch", "window", "ran on");
    let mut by_window: BTreeMap<u64, Vec<(String, u64)>> = BTreeMap::new();
    for run in &runs {
        let mut fields = run.split(':');
        let (Some(window), Some(name), Some(epoch)) = (fields.next(), fields.next(), fields.next())
        else {
            fail(format!("a malformed run: {run}"));
        };
        let (Ok(window), Ok(epoch)) = (window.parse(), epoch.parse()) else {
            fail(format!("a malformed run: {run}"));
        };
        by_window
            .entry(window)
            .or_default()
            .push((name.to_owned(), epoch));
    }
    for window in 0..windows {
        match by_window.get(&window).map(Vec::as_slice) {
            Some([(name, epoch)]) => println!("{window:<8} {name:<12} {epoch}"),
            Some(several) => fail(format!(
                "window {window} ran {} times: {several:?}",
                several.len()
            )),
            None => println!("{window:<8} {:<12} (no leader)", "-"),
        }
    }
    let killed = killed.unwrap_or_else(|| fail("the leader was never killed"));
    let after = by_window
        .values()
        .flatten()
        .filter(|(name, _)| *name != killed)
        .count();
    println!();
    if after > 0 {
        println!(
            "One leader at a time ran the schedule; when {killed} died, another instance was \
             elected once its lease ran out and took over with a larger epoch."
        );
    } else {
        fail("no instance took over from the dead leader");
    }
}

/// The instance leading now, by the epoch the watch last heard.
async fn leader_now(
    connection: &mut ConnectionManager,
    watch: &lock_runtime::LeaderWatch,
) -> String {
    match watch.state() {
        lock_runtime::LeaderState::Led { epoch: Some(epoch) } => {
            instance_of(connection, epoch).await
        }
        other => fail(format!("no known leader to kill: {other:?}")),
    }
}

/// The instance elected with `epoch` (it records itself right after the election).
async fn instance_of(connection: &mut ConnectionManager, epoch: u64) -> String {
    for _ in 0..100 {
        let name: Option<String> = redis::cmd("HGET")
            .arg(LEADERS_KEY)
            .arg(epoch)
            .query_async(connection)
            .await
            .unwrap_or_else(|error| fail(error));
        if let Some(name) = name {
            return name;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fail(format!("no instance recorded epoch {epoch}"))
}
