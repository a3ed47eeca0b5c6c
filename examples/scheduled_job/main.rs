//! A scheduled job that runs on one instance only, once per window.
//!
//! Three instances (processes: this binary in its `instance` mode) each tick a scheduler
//! once a second, on clocks a few milliseconds apart and with tens of milliseconds of
//! jitter, as real hosts have. Every tick calls the job; `skip` makes the instances that find it taken skip it,
//! and `min_hold` keeps the lock after a fast run so that a late instance does not run
//! the same window again. The output shows which instance ran each window.
//!
//! With `--leader`, the instances elect a leader instead, and only the leader runs the
//! scheduler; the demo kills it half-way, and another instance takes over when the dead
//! leader's lease ends (see `leader.rs`).
//!
//! ```text
//! cargo run --example scheduled_job
//! cargo run --example scheduled_job -- --instances 5 --windows 10
//! cargo run --example scheduled_job -- --leader
//! ```

mod leader;

use std::error::Error;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use lock_examples::{DemoRedis, fail, sleep_until_unix, spawn_self, unix_millis};
use lock_runtime::{Locker, distributed_lock};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

/// The schedule: one run per second.
const PERIOD_MS: u64 = 1_000;
/// The list where runs are recorded, as `window:instance`.
const RUNS_KEY: &str = "jobs:cleanup:runs";

#[derive(Parser)]
#[command(about = "A job scheduled on every instance that runs once per window")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    demo: Demo,
}

#[derive(Args)]
struct Demo {
    /// Redis URL; unset: a private redis-server, stopped on exit.
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
    /// Instances (processes), each with its own scheduler.
    #[arg(long, default_value_t = 3)]
    instances: usize,
    /// Windows (seconds) to run (at least 6 with `--leader`).
    #[arg(long, default_value_t = 5)]
    windows: u64,
    /// Elect a leader that runs the scheduler, and kill it half-way.
    #[arg(long)]
    leader: bool,
}

#[derive(Subcommand)]
enum Command {
    /// One instance with its scheduler (started by the demo).
    #[command(hide = true)]
    Instance(Instance),
    /// One instance in leader mode (started by the demo with `--leader`).
    #[command(hide = true)]
    LeaderInstance(leader::LeaderInstance),
}

#[derive(Args, Clone)]
struct Instance {
    #[arg(long)]
    redis: String,
    #[arg(long)]
    name: String,
    /// How far this instance's clock is ahead (negative: behind), in milliseconds.
    #[arg(long, allow_hyphen_values = true)]
    skew_ms: i64,
    /// Unix time in milliseconds of window 0.
    #[arg(long)]
    epoch: u64,
    #[arg(long)]
    windows: u64,
}

/// One tick of one instance's scheduler.
#[derive(Debug, Serialize, Deserialize)]
struct Tick {
    window: u64,
    instance: String,
    ran: bool,
}

/// The job. Every instance calls it on every tick; one runs it. `min_hold` keeps the
/// lock for 600 ms after the start even though the job takes 50 ms, longer than the
/// instances' clocks disagree and shorter than the period.
#[distributed_lock("job:cleanup", timeout = 30, skip, min_hold = "600ms", locker = locker)]
async fn cleanup(
    locker: &Locker,
    redis: &ConnectionManager,
    instance: &str,
    epoch: u64,
) -> Result<bool, Box<dyn Error + Send + Sync>> {
    // The window this run belongs to, by the (shared) real clock.
    let window = (unix_millis().saturating_sub(epoch) + PERIOD_MS / 2) / PERIOD_MS;
    tokio::time::sleep(Duration::from_millis(50)).await; // delete expired sessions...
    let _: u64 = redis
        .clone()
        .rpush(RUNS_KEY, format!("{window}:{instance}"))
        .await?;
    Ok(true)
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Instance(instance)) => run_instance(instance).await,
        Some(Command::LeaderInstance(instance)) => leader::run_leader_instance(instance).await,
        None => run_demo(cli.demo).await,
    }
}

/// An instance: tick once per period on its skewed clock, call the job, print each tick.
async fn run_instance(instance: Instance) {
    let connect = async {
        let locker = Locker::redis(&instance.redis)?;
        locker.ping().await?;
        let redis = ConnectionManager::new(redis::Client::open(instance.redis.as_str())?).await?;
        Ok::<_, Box<dyn Error>>((locker, redis))
    };
    let (locker, redis) = connect
        .await
        .unwrap_or_else(|error| fail(format!("{}: {error}", instance.name)));
    for window in 0..instance.windows {
        // This instance believes window `w` starts at epoch + w * period on its clock.
        let tick = (instance.epoch + window * PERIOD_MS).saturating_add_signed(-instance.skew_ms);
        sleep_until_unix(tick + fastrand::u64(0..40)).await;
        let ran = cleanup(&locker, &redis, &instance.name, instance.epoch)
            .await
            .unwrap_or_else(|error| fail(format!("{}: the job failed: {error}", instance.name)));
        let tick = Tick {
            window,
            instance: instance.name.clone(),
            ran,
        };
        println!(
            "{}",
            serde_json::to_string(&tick).expect("plain data serializes")
        );
    }
}

async fn run_demo(demo: Demo) {
    let redis = DemoRedis::given_or_start(demo.redis_url.clone())
        .unwrap_or_else(|message| fail(message))
        .unwrap_or_else(|| {
            fail("no redis-server on PATH and REDIS_URL unset: install redis-server or set REDIS_URL")
        });
    if demo.leader {
        return leader::run_leader_demo(&redis, demo.instances, demo.windows.max(6)).await;
    }
    let skews: Vec<i64> = (0..demo.instances)
        .map(|index| [0, 15, -10, 5, -5][index % 5])
        .collect();
    println!(
        "scheduled_job: {} instances (separate processes), clocks skewed by {:?} ms, \
         a job every {PERIOD_MS} ms for {} windows, against {}",
        demo.instances,
        skews,
        demo.windows,
        redis.describe()
    );
    let mut connection = redis::Client::open(redis.url())
        .and_then(|client| client.get_connection())
        .unwrap_or_else(|error| fail(format!("cannot reach Redis: {error}")));
    redis::cmd("DEL")
        .arg(RUNS_KEY)
        .exec(&mut connection)
        .unwrap_or_else(|error| fail(format!("cannot reach Redis: {error}")));
    let epoch = unix_millis() + 1_000;
    let children: Vec<_> = skews
        .iter()
        .enumerate()
        .map(|(index, skew)| {
            let args = [
                "instance".to_owned(),
                format!("--redis={}", redis.url()),
                format!("--name=instance-{}", index + 1),
                format!("--skew-ms={skew}"),
                format!("--epoch={epoch}"),
                format!("--windows={}", demo.windows),
            ];
            spawn_self(&args)
                .unwrap_or_else(|error| fail(format!("cannot start an instance: {error}")))
        })
        .collect();
    let mut ticks = Vec::new();
    for child in children {
        let output = child
            .wait_with_output()
            .await
            .unwrap_or_else(|error| fail(error));
        if !output.status.success() {
            fail(format!("an instance exited with {}", output.status));
        }
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let tick: Tick = serde_json::from_str(line)
                .unwrap_or_else(|error| fail(format!("{error} in {line:?}")));
            ticks.push(tick);
        }
    }
    let runs: Vec<String> = redis::cmd("LRANGE")
        .arg(RUNS_KEY)
        .arg(0)
        .arg(-1)
        .query(&mut connection)
        .unwrap_or_else(|error| fail(format!("cannot read the runs: {error}")));
    println!();
    println!("{:<8} {:<12} skipped by", "window", "ran on");
    let mut exactly_once = true;
    for window in 0..demo.windows {
        let ran: Vec<&str> = runs
            .iter()
            .filter_map(|run| run.split_once(':'))
            .filter(|(w, _)| w.parse() == Ok(window))
            .map(|(_, instance)| instance)
            .collect();
        let skipped: Vec<&str> = ticks
            .iter()
            .filter(|tick| tick.window == window && !tick.ran)
            .map(|tick| tick.instance.as_str())
            .collect();
        exactly_once &= ran.len() == 1;
        println!("{window:<8} {:<12} {}", ran.join(", "), skipped.join(", "));
    }
    println!();
    if exactly_once && runs.len() as u64 == demo.windows {
        println!("The job ran exactly once per window, on whichever instance ticked first.");
    } else {
        fail(format!(
            "the job did not run exactly once per window: {runs:?}"
        ));
    }
}
