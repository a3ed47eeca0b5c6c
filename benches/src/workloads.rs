//! The workloads. Each returns its figures; latencies are also given per RTT.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lock_runtime::{LockError, LockGuard, Locker, distributed_lock};
use redis::aio::ConnectionManager;

use crate::report::Figure;
use crate::stats::{Samples, micros, rss_bytes};

/// What every workload needs.
pub(crate) struct Bench {
    /// The single server's URL.
    pub(crate) url: String,
    /// The Redlock servers' URLs.
    pub(crate) redlock_urls: Vec<String>,
    /// PING p50, in microseconds.
    pub(crate) rtt: f64,
    /// Operations of the latency workloads.
    pub(crate) ops: u64,
    /// Duration of the timed workloads.
    pub(crate) duration: Duration,
    /// How long the many-held-locks workload holds them.
    pub(crate) hold: Duration,
}

/// A locker with the default settings on the single server.
fn locker(url: &str) -> Locker {
    Locker::redis(url).expect("a valid URL")
}

async fn connection(url: &str) -> ConnectionManager {
    let client = redis::Client::open(url).expect("a valid URL");
    ConnectionManager::new(client).await.expect("connect")
}

/// The baseline: PING p50 over `ops` sequential calls on a `ConnectionManager`.
pub(crate) async fn rtt(url: &str, ops: u64) -> (f64, Vec<Figure>) {
    let mut redis = connection(url).await;
    let mut samples = Vec::with_capacity(ops as usize);
    for _ in 0..ops {
        let started = Instant::now();
        let _: String = redis::cmd("PING")
            .query_async(&mut redis)
            .await
            .expect("PING");
        samples.push(started.elapsed());
    }
    let samples = Samples::new(samples);
    let p50 = micros(samples.percentile(50.0));
    let figures = vec![
        Figure::new("rtt", "PING p50", p50, "us"),
        Figure::new("rtt", "PING p99", micros(samples.percentile(99.0)), "us"),
    ];
    (p50, figures)
}

/// `ops` sequential acquire+release pairs on fresh keys; the samples.
async fn pairs(locker: &Locker, prefix: &str, ops: u64) -> Samples {
    let mut samples = Vec::with_capacity(ops as usize);
    for index in 0..ops {
        let started = Instant::now();
        let guard = locker
            .lock(format!("{prefix}:{index}"))
            .acquire()
            .await
            .expect("acquire");
        assert!(
            guard.release().await.expect("release"),
            "lost an uncontended lock"
        );
        samples.push(started.elapsed());
    }
    Samples::new(samples)
}

/// Workload 1, latency: 1 task, acquire+release on fresh keys.
pub(crate) async fn latency(bench: &Bench) -> Vec<Figure> {
    let locker = locker(&bench.url);
    locker.ping().await.expect("ping");
    pairs(&locker, "bench:warmup", 500).await;
    let started = Instant::now();
    let samples = pairs(&locker, "bench:latency", bench.ops).await;
    let elapsed = started.elapsed();
    let p50 = micros(samples.percentile(50.0));
    vec![
        Figure::new("latency", "acquire+release p50", p50, "us")
            .per_rtt(bench.rtt)
            .target("<= 2.5 x RTT", p50 <= 2.5 * bench.rtt),
        Figure::new(
            "latency",
            "acquire+release p99",
            micros(samples.percentile(99.0)),
            "us",
        )
        .per_rtt(bench.rtt),
        Figure::new(
            "latency",
            "pairs/s",
            bench.ops as f64 / elapsed.as_secs_f64(),
            "1/s",
        ),
    ]
}

/// Workload 2, throughput: 64 tasks, each on its own keys.
pub(crate) async fn throughput(bench: &Bench) -> Vec<Figure> {
    const TASKS: usize = 64;
    let locker = locker(&bench.url);
    locker.ping().await.expect("ping");
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let (locker, stop, done) = (locker.clone(), stop.clone(), done.clone());
        tasks.spawn(async move {
            let mut index = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                let guard = locker
                    .lock(format!("bench:tp:{task}:{index}"))
                    .acquire()
                    .await
                    .expect("acquire");
                assert!(guard.release().await.expect("release"));
                index += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let started = Instant::now();
    tokio::time::sleep(bench.duration).await;
    stop.store(true, Ordering::Relaxed);
    let pairs = done.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    while tasks.join_next().await.is_some() {}
    let rate = pairs as f64 / elapsed.as_secs_f64();
    vec![
        Figure::new("throughput", format!("{TASKS} tasks, pairs/s"), rate, "1/s")
            .target(">= 100000/s", rate >= 100_000.0),
    ]
}

/// Workload 3, contended: 8 workers on one key, each section a GET/SET increment on its own
/// connection.
pub(crate) async fn contended(bench: &Bench) -> Vec<Figure> {
    const WORKERS: usize = 8;
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    let mut check = connection(&bench.url).await;
    let _: () = redis::cmd("DEL")
        .arg("bench:counter")
        .query_async(&mut check)
        .await
        .expect("DEL");
    for _ in 0..WORKERS {
        let locker = locker(&bench.url);
        locker.ping().await.expect("ping");
        let mut counter = connection(&bench.url).await;
        let stop = stop.clone();
        tasks.spawn(async move {
            let mut waits = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let guard = locker
                    .lock("bench:contended")
                    .wait(Duration::from_secs(30))
                    .acquire()
                    .await
                    .expect("acquire");
                waits.push(started.elapsed());
                let value: Option<u64> = redis::cmd("GET")
                    .arg("bench:counter")
                    .query_async(&mut counter)
                    .await
                    .expect("GET");
                let _: () = redis::cmd("SET")
                    .arg("bench:counter")
                    .arg(value.unwrap_or(0) + 1)
                    .query_async(&mut counter)
                    .await
                    .expect("SET");
                assert!(
                    guard.release().await.expect("release"),
                    "lost a contended lock"
                );
            }
            waits
        });
    }
    let started = Instant::now();
    tokio::time::sleep(bench.duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut per_worker = Vec::new();
    let mut all = Vec::new();
    while let Some(waits) = tasks.join_next().await {
        let waits = waits.expect("a worker panicked");
        per_worker.push(waits.len() as f64);
        all.extend(waits);
    }
    let elapsed = started.elapsed();
    let sections = all.len() as u64;
    let counter: Option<u64> = redis::cmd("GET")
        .arg("bench:counter")
        .query_async(&mut check)
        .await
        .expect("GET");
    let waits = Samples::new(all);
    let rate = sections as f64 / elapsed.as_secs_f64();
    let floor = 1e6 / (5.0 * bench.rtt);
    let mean = sections as f64 / WORKERS as f64;
    let min = per_worker.iter().copied().fold(f64::INFINITY, f64::min);
    let max = per_worker.iter().copied().fold(0.0, f64::max);
    let max_wait = waits.max();
    vec![
        Figure::new("contended", "sections/s", rate, "1/s")
            .target(format!(">= 1/(5 x RTT) = {floor:.0}/s"), rate >= floor),
        Figure::new(
            "contended",
            "wait p50",
            micros(waits.percentile(50.0)),
            "us",
        )
        .per_rtt(bench.rtt),
        Figure::new(
            "contended",
            "wait p99",
            micros(waits.percentile(99.0)),
            "us",
        )
        .per_rtt(bench.rtt),
        Figure::new("contended", "wait max", micros(max_wait), "us")
            .target("<= 50 ms", max_wait <= Duration::from_millis(50)),
        Figure::new(
            "contended",
            "sections per worker, min / mean",
            min / mean,
            "ratio",
        )
        .target(">= 0.5", min >= 0.5 * mean),
        Figure::new(
            "contended",
            "sections per worker, max / mean",
            max / mean,
            "ratio",
        ),
        Figure::new(
            "contended",
            "counter - sections (safety)",
            counter.unwrap_or(0) as f64 - sections as f64,
            "",
        )
        .target("= 0", counter == Some(sections)),
    ]
}

#[distributed_lock("bench:attr:<index>", locker = locker)]
async fn annotated(locker: &Locker, index: u64) -> Result<(), LockError> {
    std::hint::black_box(index);
    Ok(())
}

/// Workload 4, attribute overhead: workload 1 through an annotated function vs the guard API,
/// in alternating rounds so that drift of the machine affects both alike.
pub(crate) async fn attribute(bench: &Bench) -> Vec<Figure> {
    const ROUNDS: u64 = 10;
    let locker = locker(&bench.url);
    locker.ping().await.expect("ping");
    pairs(&locker, "bench:warmup", 500).await;
    let per_round = (bench.ops / ROUNDS).max(1);
    let (mut guard_samples, mut attr_samples) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let offset = round * per_round;
        for index in offset..offset + per_round {
            let started = Instant::now();
            let guard: LockGuard = locker
                .lock(format!("bench:guard:{index}"))
                .acquire()
                .await
                .expect("acquire");
            assert!(guard.release().await.expect("release"));
            guard_samples.push(started.elapsed());
        }
        for index in offset..offset + per_round {
            let started = Instant::now();
            annotated(&locker, index).await.expect("annotated");
            attr_samples.push(started.elapsed());
        }
    }
    let guard = Samples::new(guard_samples);
    let attr = Samples::new(attr_samples);
    let ratio = attr.percentile(50.0).as_secs_f64() / guard.percentile(50.0).as_secs_f64();
    vec![
        Figure::new(
            "attribute",
            "guard p50",
            micros(guard.percentile(50.0)),
            "us",
        )
        .per_rtt(bench.rtt),
        Figure::new(
            "attribute",
            "attribute p50",
            micros(attr.percentile(50.0)),
            "us",
        )
        .per_rtt(bench.rtt),
        Figure::new("attribute", "attribute / guard (p50)", ratio, "ratio")
            .target("<= 1.03", ratio <= 1.03),
    ]
}

/// Calls of `command` that Redis has executed (INFO commandstats).
async fn command_calls(redis: &mut ConnectionManager, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(redis)
        .await
        .expect("INFO");
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

/// Workload 5, many held locks: 10,000 locks with auto-renewal held for `hold`.
pub(crate) async fn held(bench: &Bench) -> Vec<Figure> {
    const LOCKS: usize = 10_000;
    const TTL: Duration = Duration::from_secs(3);
    let locker = locker(&bench.url);
    locker.ping().await.expect("ping");
    let mut stats = connection(&bench.url).await;
    // Warm up the allocator and the connection before the baseline.
    drop(pairs(&locker, "bench:warmup", 100).await);
    let before = rss_bytes().unwrap_or(0);
    let mut guards = Vec::with_capacity(LOCKS);
    for index in 0..LOCKS {
        let guard = locker
            .lock(format!("bench:held:{index}"))
            .ttl(TTL)
            .auto_renew()
            .acquire()
            .await
            .expect("acquire");
        guards.push(guard);
    }
    let after = rss_bytes().unwrap_or(0);
    let per_lock = after.saturating_sub(before) as f64 / LOCKS as f64;
    let scripts_before = command_calls(&mut stats, "evalsha").await;
    let started = Instant::now();
    tokio::time::sleep(bench.hold).await;
    let renew_commands = command_calls(&mut stats, "evalsha").await - scripts_before;
    let elapsed = started.elapsed();
    let lost = guards.iter().filter(|guard| guard.is_lost()).count();
    let dbsize: u64 = redis::cmd("DBSIZE")
        .query_async(&mut stats)
        .await
        .expect("DBSIZE");
    let commands_per_sec = renew_commands as f64 / elapsed.as_secs_f64();
    // Each lock is renewed every third of its TTL.
    let renewals_per_sec = LOCKS as f64 * 3.0 / TTL.as_secs_f64();
    for guard in guards {
        assert!(guard.release().await.expect("release"), "lost a held lock");
    }
    vec![
        Figure::new(
            "held",
            format!("client RSS per held lock ({LOCKS})"),
            per_lock,
            "bytes",
        )
        .target("<= 2048 bytes", per_lock <= 2048.0),
        Figure::new("held", "renewal commands/s", commands_per_sec, "1/s").target(
            "batched: <= 1/10 of lock renewals/s",
            commands_per_sec <= renewals_per_sec / 10.0,
        ),
        Figure::new(
            "held",
            format!("lock renewals/s (TTL {TTL:?})"),
            renewals_per_sec,
            "1/s",
        ),
        Figure::new("held", "lost", lost as f64, "").target("= 0", lost == 0),
        Figure::new("held", "keys in Redis at the end", dbsize as f64, ""),
    ]
}

/// Workload 6, Redlock: workload 1 on 5 servers vs 1.
pub(crate) async fn redlock(bench: &Bench) -> Vec<Figure> {
    let single = locker(&bench.url);
    let quorum = Locker::redlock(&bench.redlock_urls).expect("valid URLs");
    single.ping().await.expect("ping");
    quorum.ping().await.expect("ping");
    pairs(&quorum, "bench:warmup", 500).await;
    let ops = (bench.ops / 2).max(1);
    let one = pairs(&single, "bench:redlock1", ops).await;
    let five = pairs(&quorum, "bench:redlock5", ops).await;
    let ratio = five.percentile(50.0).as_secs_f64() / one.percentile(50.0).as_secs_f64();
    // The machine's own floor for this ratio: a PING sent to every server at once and
    // awaited from all, against a PING to one.
    let mut fan_out = Vec::new();
    for url in &bench.redlock_urls {
        fan_out.push(connection(url).await);
    }
    let mut samples = Vec::with_capacity(ops as usize);
    for _ in 0..ops {
        let started = Instant::now();
        let pings = fan_out.iter_mut().map(|redis| async move {
            let _: String = redis::cmd("PING").query_async(redis).await.expect("PING");
        });
        futures_util::future::join_all(pings).await;
        samples.push(started.elapsed());
    }
    let fan_out = Samples::new(samples);
    let floor = micros(fan_out.percentile(50.0)) / bench.rtt;
    vec![
        Figure::new(
            "redlock",
            "1 server p50",
            micros(one.percentile(50.0)),
            "us",
        )
        .per_rtt(bench.rtt),
        Figure::new(
            "redlock",
            format!("{} servers p50", bench.redlock_urls.len()),
            micros(five.percentile(50.0)),
            "us",
        )
        .per_rtt(bench.rtt),
        Figure::new(
            "redlock",
            format!("{} servers p99", bench.redlock_urls.len()),
            micros(five.percentile(99.0)),
            "us",
        )
        .per_rtt(bench.rtt),
        Figure::new("redlock", "5 / 1 servers (p50)", ratio, "ratio")
            .target("<= 1.5", ratio <= 1.5),
        Figure::new(
            "redlock",
            format!(
                "PING to {} servers at once / PING",
                bench.redlock_urls.len()
            ),
            floor,
            "ratio",
        ),
    ]
}
