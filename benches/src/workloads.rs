//! The workloads. Each returns its figures; latencies are also given per RTT.
//!
//! The side-by-side workloads (latency, throughput, contended, handoff) run every side once
//! per round, rotating which goes first (A B, B A, ...), and report the median of the
//! rounds with the smallest and largest round; ratios are the median of the per-round
//! ratios, so that drift of the machine affects both sides alike.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lock_runtime::{LockError, LockGuard, Locker, distributed_lock};
use redis::aio::ConnectionManager;

use crate::report::Figure;
use crate::sides::{Client, Side};
use crate::stats::{Samples, cpu_seconds, median, micros};

/// What every workload needs.
pub(crate) struct Bench {
    /// The single server's URL.
    pub(crate) url: String,
    /// The Redlock servers' URLs.
    pub(crate) redlock_urls: Vec<String>,
    /// PING p50, in microseconds.
    pub(crate) rtt: f64,
    /// Interleaved rounds of the side-by-side workloads.
    pub(crate) rounds: usize,
    /// Operations of the latency workloads, per side over all rounds.
    pub(crate) ops: u64,
    /// Duration of one round of a timed workload (throughput, contended), per side.
    pub(crate) duration: Duration,
    /// Hand-offs per side over all rounds.
    pub(crate) handoffs: u64,
    /// How long the many-held-locks workload holds them.
    pub(crate) hold: Duration,
    /// Run only this side of the side-by-side workloads (for profiling one library).
    pub(crate) only: Option<Side>,
}

impl Bench {
    /// `total` split over the rounds (at least 1 each).
    pub(crate) fn per_round(&self, total: u64) -> u64 {
        (total / self.rounds as u64).max(1)
    }

    /// The indices of `sides` in the order they run in `round`: rotated by one each round
    /// (A B, B A, ... or A B C, B C A, ...); only the side of `--only` if given.
    fn order(&self, round: usize, sides: &[Side]) -> impl Iterator<Item = usize> {
        let only = self.only;
        let count = sides.len();
        let sides = sides.to_vec();
        (0..count)
            .map(move |offset| (round + offset) % count)
            .filter(move |&index| only.is_none_or(|only| sides[index] == only))
    }
}

/// A locker with the default settings on the single server.
fn locker(url: &str) -> Locker {
    Locker::redis(url).expect("a valid URL")
}

pub(crate) async fn connection(url: &str) -> ConnectionManager {
    let client = redis::Client::open(url).expect("a valid URL");
    ConnectionManager::new(client).await.expect("connect")
}

/// PING round trips, `ops` in a row, or each after a `pause` (the client and the server
/// idle first, as before a hand-off).
pub(crate) async fn pings(
    redis: &mut ConnectionManager,
    ops: u64,
    pause: Option<Duration>,
) -> Samples {
    let mut samples = Vec::with_capacity(ops as usize);
    for _ in 0..ops {
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        }
        let started = Instant::now();
        let _: String = redis::cmd("PING").query_async(redis).await.expect("PING");
        samples.push(started.elapsed());
    }
    Samples::new(samples)
}

/// The baseline: PING p50 over `ops` sequential calls on a `ConnectionManager`.
pub(crate) async fn rtt(url: &str, ops: u64) -> (f64, Vec<Figure>) {
    let samples = pings(&mut connection(url).await, ops, None).await;
    let p50 = micros(samples.percentile(50.0));
    let figures = vec![
        Figure::new("rtt", "PING p50", p50, "us"),
        Figure::new("rtt", "PING p99", micros(samples.percentile(99.0)), "us"),
    ];
    (p50, figures)
}

/// One side's latency percentiles, one of each per round, in microseconds.
#[derive(Default)]
struct Percentiles {
    p50: Vec<f64>,
    p99: Vec<f64>,
}

impl Percentiles {
    fn push(&mut self, samples: &Samples) {
        self.p50.push(micros(samples.percentile(50.0)));
        self.p99.push(micros(samples.percentile(99.0)));
    }

    /// Ours: the p50 over the PING p50 of the same round, median of the rounds, held to
    /// `limit`.
    fn over_rtt(&self, workload: &'static str, rtts: &[f64], limit: f64) -> Figure {
        let ratio = ratios(&self.p50, rtts);
        let figure = Figure::rounds(
            workload,
            "ours p50 / PING p50 (same round)",
            &ratio,
            "ratio",
        );
        let met = figure.value <= limit;
        figure.target(format!("<= {limit}"), met)
    }

    /// `{label} {what} p50` and `p99`, medians of the rounds, also per RTT.
    fn figures(&self, workload: &'static str, label: &str, what: &str, rtt: f64) -> [Figure; 2] {
        [
            Figure::rounds(workload, format!("{label} {what} p50"), &self.p50, "us").per_rtt(rtt),
            Figure::rounds(workload, format!("{label} {what} p99"), &self.p99, "us").per_rtt(rtt),
        ]
    }
}

/// Per-round ratios of two sides' figures.
pub(crate) fn ratios(ours: &[f64], theirs: &[f64]) -> Vec<f64> {
    ours.iter().zip(theirs).map(|(a, b)| a / b).collect()
}

/// `ops` sequential acquire+release pairs on fresh keys `{prefix}:{index}`; the samples.
pub(crate) async fn pairs(client: &Client, prefix: &str, ops: u64) -> Samples {
    let mut samples = Vec::with_capacity(ops as usize);
    for index in 0..ops {
        let started = Instant::now();
        let guard = client.acquire(format!("{prefix}:{index}"), false).await;
        assert!(guard.release().await, "lost an uncontended lock");
        samples.push(started.elapsed());
    }
    Samples::new(samples)
}

/// Workload 1, latency: 1 task, acquire+release on fresh keys, ours and rslock, and
/// redis-rs alone sending the same two commands as rslock (the floor).
pub(crate) async fn latency(bench: &Bench) -> Vec<Figure> {
    const SIDES: [Side; 3] = [Side::Ours, Side::Rslock, Side::Bare];
    let mut clients = Vec::new();
    for side in SIDES {
        let client = side.client(&bench.url).await;
        pairs(&client, &side.key("warmup"), 500).await;
        clients.push(client);
    }
    let mut ping = connection(&bench.url).await;
    let per_round = bench.per_round(bench.ops);
    let mut rtts = Vec::new();
    let mut results: [Percentiles; 3] = Default::default();
    for round in 0..bench.rounds {
        let pings = pings(&mut ping, per_round, None).await;
        rtts.push(micros(pings.percentile(50.0)));
        for index in bench.order(round, &SIDES) {
            let prefix = SIDES[index].key(format!("latency:{round}"));
            results[index].push(&pairs(&clients[index], &prefix, per_round).await);
        }
    }
    // The round trip of these rounds: the run's first PINGs can be caught by a busy moment.
    let rtt = median(&rtts);
    let mut figures = vec![Figure::rounds(
        "latency",
        "PING p50 in these rounds",
        &rtts,
        "us",
    )];
    for (side, result) in SIDES.iter().zip(&results) {
        figures.extend(result.figures("latency", side.label(), "acquire+release", rtt));
    }
    figures.push(results[0].over_rtt("latency", &rtts, 2.5));
    let [ours, theirs, bare] = &results;
    let p50 = Figure::rounds(
        "latency",
        "ours / rslock p50",
        &ratios(&ours.p50, &theirs.p50),
        "ratio",
    );
    let met = p50.value <= 0.85;
    figures.push(p50.target("<= 0.85", met));
    figures.push(Figure::rounds(
        "latency",
        "ours / rslock p99",
        &ratios(&ours.p99, &theirs.p99),
        "ratio",
    ));
    for (label, side) in [("ours", ours), ("rslock", theirs)] {
        figures.push(Figure::rounds(
            "latency",
            format!("{label} / redis-rs alone p50 (floor)"),
            &ratios(&side.p50, &bare.p50),
            "ratio",
        ));
    }
    figures
}

/// What Redis has executed so far (INFO commandstats): calls of script commands (EVAL,
/// EVALSHA, FCALL and their read-only forms), and calls of every command but INFO,
/// including those that scripts made.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Calls {
    pub(crate) scripts: u64,
    pub(crate) all: u64,
}

pub(crate) async fn command_calls(redis: &mut ConnectionManager) -> Calls {
    const SCRIPTS: [&str; 6] = [
        "eval",
        "evalsha",
        "eval_ro",
        "evalsha_ro",
        "fcall",
        "fcall_ro",
    ];
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(redis)
        .await
        .expect("INFO");
    let mut calls = Calls { scripts: 0, all: 0 };
    for line in info.lines() {
        let Some((command, rest)) = line
            .strip_prefix("cmdstat_")
            .and_then(|line| line.split_once(":calls="))
        else {
            continue;
        };
        let count: u64 = rest
            .split(',')
            .next()
            .and_then(|count| count.parse().ok())
            .unwrap_or(0);
        if command == "info" {
            continue;
        }
        if SCRIPTS.contains(&command) {
            calls.scripts += count;
        }
        calls.all += count;
    }
    calls
}

/// CPU time the server has used, user + system, in seconds (INFO cpu).
async fn server_cpu(redis: &mut ConnectionManager) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(redis)
        .await
        .expect("INFO");
    info.lines()
        .filter_map(|line| {
            line.strip_prefix("used_cpu_user:")
                .or_else(|| line.strip_prefix("used_cpu_sys:"))
        })
        .filter_map(|seconds| seconds.trim().parse::<f64>().ok())
        .sum()
}

/// Client and server CPU over a stretch of work.
struct CpuMeter {
    client: f64,
    server: f64,
}

impl CpuMeter {
    /// Starts measuring this process and the servers of `servers`.
    async fn start(servers: &mut [ConnectionManager]) -> Self {
        Self {
            client: cpu_seconds(),
            server: servers_cpu(servers).await,
        }
    }

    /// Microseconds of client and of server CPU per operation since `start`.
    async fn per_op(&self, servers: &mut [ConnectionManager], ops: u64) -> (f64, f64) {
        let client = cpu_seconds() - self.client;
        let server = servers_cpu(servers).await - self.server;
        let ops = ops.max(1) as f64;
        (client * 1e6 / ops, server * 1e6 / ops)
    }
}

/// The CPU time of all of `servers`, in seconds.
async fn servers_cpu(servers: &mut [ConnectionManager]) -> f64 {
    let mut total = 0.0;
    for server in servers {
        total += server_cpu(server).await;
    }
    total
}

/// One round of workload 2: pairs/s, client and server CPU per pair (us); the server CPU
/// is that of every server of `stats`.
pub(crate) async fn throughput_round(
    bench: &Bench,
    client: &Client,
    prefix: &str,
    stats: &mut [ConnectionManager],
) -> [f64; 3] {
    const TASKS: usize = 64;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let cpu = CpuMeter::start(stats).await;
    for task in 0..TASKS {
        let (client, stop, done) = (client.clone(), stop.clone(), done.clone());
        let prefix = format!("{prefix}:{task}");
        tasks.spawn(async move {
            let mut index = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                let guard = client.acquire(format!("{prefix}:{index}"), false).await;
                assert!(guard.release().await, "lost an uncontended lock");
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
    while let Some(task) = tasks.join_next().await {
        task.expect("a task panicked");
    }
    let (client_cpu, server_cpu) = cpu.per_op(stats, done.load(Ordering::Relaxed)).await;
    [pairs as f64 / elapsed.as_secs_f64(), client_cpu, server_cpu]
}

/// Workload 2, throughput: 64 tasks on one client, each on its own keys, ours and rslock,
/// and redis-rs alone sending the same two commands as rslock (the floor).
pub(crate) async fn throughput(bench: &Bench) -> Vec<Figure> {
    const SIDES: [Side; 3] = [Side::Ours, Side::Rslock, Side::Bare];
    let mut clients = Vec::new();
    for side in SIDES {
        clients.push(side.client(&bench.url).await);
    }
    let clients = &clients;
    let stats = &mut [connection(&bench.url).await];
    let mut results = vec![[[0.0; 3]; 3]; bench.rounds];
    for (round, result) in results.iter_mut().enumerate() {
        for index in bench.order(round, &SIDES) {
            let prefix = SIDES[index].key(format!("tp:{round}"));
            result[index] = throughput_round(bench, &clients[index], &prefix, stats).await;
        }
    }
    let metric = |side: usize, which: usize| {
        results
            .iter()
            .map(|round| round[side][which])
            .collect::<Vec<_>>()
    };
    let mut figures = Vec::new();
    for (index, side) in SIDES.iter().enumerate() {
        let label = side.label();
        let mut rate = Figure::rounds(
            "throughput",
            format!("{label} 64 tasks, pairs/s"),
            &metric(index, 0),
            "1/s",
        );
        if *side == Side::Ours {
            let met = rate.value >= 100_000.0;
            rate = rate.target(">= 100000/s", met);
        }
        figures.push(rate);
        figures.push(Figure::rounds(
            "throughput",
            format!("{label} client CPU per pair"),
            &metric(index, 1),
            "us",
        ));
        figures.push(Figure::rounds(
            "throughput",
            format!("{label} server CPU per pair"),
            &metric(index, 2),
            "us",
        ));
    }
    let ratio = Figure::rounds(
        "throughput",
        "ours / rslock pairs/s",
        &ratios(&metric(0, 0), &metric(1, 0)),
        "ratio",
    );
    let met = ratio.value >= 1.3;
    figures.push(ratio.target(">= 1.3", met));
    for (index, label) in [(0, "ours"), (1, "rslock")] {
        figures.push(Figure::rounds(
            "throughput",
            format!("{label} / redis-rs alone pairs/s (floor)"),
            &ratios(&metric(index, 0), &metric(2, 0)),
            "ratio",
        ));
    }
    figures
}

/// One round of workload 3.
struct Contention {
    rate: f64,
    wait_p99: f64,
    wait_max: f64,
    min_share: f64,
    max_share: f64,
    /// Counter minus sections: anything but 0 means two holders overlapped.
    unsafe_sections: f64,
    client_cpu: f64,
    /// Every command Redis executed (including those in scripts), less the section's own
    /// GET and SET.
    commands: f64,
}

/// The contended workload's section: a GET/SET increment of `counter` (two round trips;
/// two holders at once would lose increments).
async fn section(redis: &mut ConnectionManager, counter: &str) {
    let value: Option<u64> = redis::cmd("GET")
        .arg(counter)
        .query_async(redis)
        .await
        .expect("GET");
    let _: () = redis::cmd("SET")
        .arg(counter)
        .arg(value.unwrap_or(0) + 1)
        .query_async(redis)
        .await
        .expect("SET");
}

/// One round of workload 3: `WORKERS` workers, each with its own client and counter
/// connection, on one key; each section a GET/SET increment of a counter.
async fn contended_round(bench: &Bench, side: Side, round: usize) -> Contention {
    const WORKERS: usize = 8;
    let lock = side.key(format!("contended:{round}"));
    let counter = side.key(format!("counter:{round}"));
    let mut stats = connection(&bench.url).await;
    let _: () = redis::cmd("DEL")
        .arg(&counter)
        .query_async(&mut stats)
        .await
        .expect("DEL");
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        workers.push((side.client(&bench.url).await, connection(&bench.url).await));
    }
    let calls = command_calls(&mut stats).await;
    let cpu = CpuMeter::start(std::slice::from_mut(&mut stats)).await;
    let mut tasks = tokio::task::JoinSet::new();
    for (client, mut redis) in workers {
        let (stop, lock, counter) = (stop.clone(), lock.clone(), counter.clone());
        tasks.spawn(async move {
            let mut waits = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let guard = client.acquire(lock.clone(), true).await;
                waits.push(started.elapsed());
                section(&mut redis, &counter).await;
                assert!(guard.release().await, "lost a contended lock");
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
    let (client_cpu, _) = cpu.per_op(std::slice::from_mut(&mut stats), sections).await;
    let commands = command_calls(&mut stats).await.all - calls.all;
    let value: Option<u64> = redis::cmd("GET")
        .arg(&counter)
        .query_async(&mut stats)
        .await
        .expect("GET");
    let waits = Samples::new(all);
    let mean = sections as f64 / WORKERS as f64;
    let min = per_worker.iter().copied().fold(f64::INFINITY, f64::min);
    let max = per_worker.iter().copied().fold(0.0, f64::max);
    Contention {
        rate: sections as f64 / elapsed.as_secs_f64(),
        wait_p99: micros(waits.percentile(99.0)),
        wait_max: micros(waits.max()),
        min_share: min / mean,
        max_share: max / mean,
        unsafe_sections: value.unwrap_or(0) as f64 - sections as f64,
        client_cpu,
        commands: commands.saturating_sub(2 * sections) as f64 / sections.max(1) as f64,
    }
}

/// The floor of first-come, first-served sections: the same 8 workers and sections as
/// `contended_round`, with no lock at all, passing a baton round a ring of in-process
/// channels (a hand-off that costs one wake-up and no message through Redis); sections/s.
async fn baton_round(bench: &Bench, round: usize) -> f64 {
    const WORKERS: usize = 8;
    let counter = format!("bench:baton:counter:{round}");
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..WORKERS)
        .map(|_| tokio::sync::mpsc::unbounded_channel::<()>())
        .unzip();
    let mut tasks = tokio::task::JoinSet::new();
    for (index, mut baton) in receivers.into_iter().enumerate() {
        let next = senders[(index + 1) % WORKERS].clone();
        let mut redis = connection(&bench.url).await;
        let (stop, done, counter) = (stop.clone(), done.clone(), counter.clone());
        tasks.spawn(async move {
            while baton.recv().await.is_some() && !stop.load(Ordering::Relaxed) {
                section(&mut redis, &counter).await;
                done.fetch_add(1, Ordering::Relaxed);
                let _ = next.send(());
            }
        });
    }
    let started = Instant::now();
    senders[0].send(()).expect("the first worker waits");
    tokio::time::sleep(bench.duration).await;
    stop.store(true, Ordering::Relaxed);
    let sections = done.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    drop(senders);
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let () = redis::cmd("DEL")
        .arg(&counter)
        .query_async(&mut connection(&bench.url).await)
        .await
        .expect("DEL");
    sections as f64 / elapsed.as_secs_f64()
}

/// Workload 3, contended: 8 workers on one key; ours (`.wait(..)`), rslock with its
/// default retry settings and with a 2 ms retry delay; and the floor of any first-come,
/// first-served lock on this machine (`baton_round`), before or after them in turn.
pub(crate) async fn contended(bench: &Bench) -> Vec<Figure> {
    const SIDES: [Side; 3] = [Side::Ours, Side::Rslock, Side::RslockFast];
    let mut results: [Vec<Contention>; 3] = Default::default();
    let mut batons = Vec::new();
    for round in 0..bench.rounds {
        if round % 2 == 0 {
            batons.push(baton_round(bench, round).await);
        }
        for index in bench.order(round, &SIDES) {
            results[index].push(contended_round(bench, SIDES[index], round).await);
        }
        if round % 2 == 1 {
            batons.push(baton_round(bench, round).await);
        }
    }
    let metric = |side: usize, get: fn(&Contention) -> f64| {
        results[side].iter().map(get).collect::<Vec<_>>()
    };
    let floor = 1e6 / (5.0 * bench.rtt);
    let mut figures = Vec::new();
    for (index, side) in SIDES.iter().enumerate() {
        let ours = *side == Side::Ours;
        let label = side.label();
        let rate = Figure::rounds(
            "contended",
            format!("{label} sections/s"),
            &metric(index, |r| r.rate),
            "1/s",
        );
        figures.push(if ours {
            let met = rate.value >= floor;
            rate.target(format!(">= 1/(5 x RTT) = {floor:.0}/s"), met)
        } else {
            rate
        });
        figures.push(
            Figure::rounds(
                "contended",
                format!("{label} wait p99"),
                &metric(index, |r| r.wait_p99),
                "us",
            )
            .per_rtt(bench.rtt),
        );
        let longest = metric(index, |r| r.wait_max);
        let wait_max = Figure::rounds("contended", format!("{label} longest wait"), &longest, "us");
        figures.push(if ours {
            let met = longest.iter().all(|max| *max <= 20_000.0);
            wait_max.target("<= 20 ms (every round)", met)
        } else {
            wait_max
        });
        let min_share = Figure::rounds(
            "contended",
            format!("{label} sections per worker, min / mean"),
            &metric(index, |r| r.min_share),
            "ratio",
        );
        figures.push(if ours {
            let met = min_share.value >= 0.9;
            min_share.target(">= 0.9", met)
        } else {
            min_share
        });
        figures.push(Figure::rounds(
            "contended",
            format!("{label} sections per worker, max / mean"),
            &metric(index, |r| r.max_share),
            "ratio",
        ));
        figures.push(Figure::rounds(
            "contended",
            format!("{label} client CPU per section"),
            &metric(index, |r| r.client_cpu),
            "us",
        ));
        figures.push(Figure::rounds(
            "contended",
            format!("{label} Redis commands per section"),
            &metric(index, |r| r.commands),
            "",
        ));
        let unsafe_sections = metric(index, |r| r.unsafe_sections);
        let worst = unsafe_sections
            .iter()
            .copied()
            .fold(0.0, |a: f64, b| a.max(b.abs()));
        figures.push(
            Figure::new(
                "contended",
                format!("{label} counter - sections (safety)"),
                worst,
                "",
            )
            .target("= 0 (every round)", worst == 0.0),
        );
    }
    let rate = |side: usize| metric(side, |r| r.rate);
    let fast = Figure::rounds(
        "contended",
        "ours / rslock 2ms sections/s",
        &ratios(&rate(0), &rate(2)),
        "ratio",
    );
    let met = fast.value >= 1.2;
    figures.push(fast.target(">= 1.2", met));
    figures.push(Figure::rounds(
        "contended",
        "ours / rslock sections/s",
        &ratios(&rate(0), &rate(1)),
        "ratio",
    ));
    figures.push(Figure::rounds(
        "contended",
        "floor: FIFO baton in-process, no lock, sections/s",
        &batons,
        "1/s",
    ));
    for (index, label) in [(0, "ours"), (2, "rslock 2ms")] {
        figures.push(Figure::rounds(
            "contended",
            format!("{label} / floor sections/s"),
            &ratios(&rate(index), &batons),
            "ratio",
        ));
    }
    figures
}

/// How long the holder keeps the lock after the waiter has started waiting: enough for
/// the waiter to try, queue and go to sleep (a few round trips).
pub(crate) const HANDOFF_PAUSE: Duration = Duration::from_millis(5);

/// One round of workload 4: `reps` hand-offs from `holder` to `waiter` on fresh keys. Each
/// is timed from just before the holder's release is sent to the waiter's `acquire`
/// returning; the waiter has been waiting for `HANDOFF_PAUSE` by then.
pub(crate) async fn handoff_round(
    holder: &Client,
    waiter: &Client,
    side: Side,
    round: usize,
    reps: u64,
) -> Samples {
    let mut samples = Vec::with_capacity(reps as usize);
    for index in 0..reps {
        let name = side.key(format!("handoff:{round}:{index}"));
        let held = holder.acquire(name.clone(), false).await;
        let released = Arc::new(AtomicBool::new(false));
        let (waiting, started_waiting) = tokio::sync::oneshot::channel();
        let task = tokio::spawn({
            let (waiter, released) = (waiter.clone(), released.clone());
            async move {
                waiting.send(()).expect("the holder is there");
                let guard = waiter.acquire(name, true).await;
                let acquired = Instant::now();
                assert!(
                    released.load(Ordering::SeqCst),
                    "the waiter got the lock while the holder held it"
                );
                assert!(guard.release().await, "lost a handed-off lock");
                acquired
            }
        });
        started_waiting.await.expect("the waiter starts");
        tokio::time::sleep(HANDOFF_PAUSE).await;
        released.store(true, Ordering::SeqCst);
        let releasing = Instant::now();
        assert!(held.release().await, "lost a held lock");
        let acquired = task.await.expect("the waiter panicked");
        samples.push(acquired.duration_since(releasing));
    }
    Samples::new(samples)
}

/// The floor of a hand-off from idle: a PUBLISH on one connection, after a pause, until a
/// task listening on another connection (RESP3 push messages, as ours) has the message.
struct Relay {
    publisher: ConnectionManager,
    /// The instants the listening task received each message.
    heard: tokio::sync::mpsc::UnboundedReceiver<Instant>,
    /// Keeps the subscription's connection alive.
    _subscriber: ConnectionManager,
}

impl Relay {
    const CHANNEL: &str = "bench:relay";

    async fn new(url: &str) -> Self {
        let (pushes, mut received) = tokio::sync::mpsc::unbounded_channel::<redis::PushInfo>();
        let (told, heard) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(push) = received.recv().await {
                if push.kind == redis::PushKind::Message && told.send(Instant::now()).is_err() {
                    return;
                }
            }
        });
        let client = redis::Client::open(format!("{url}?protocol=resp3")).expect("a valid URL");
        let config = redis::aio::ConnectionManagerConfig::new().set_push_sender(pushes);
        let mut subscriber = ConnectionManager::new_with_config(client, config)
            .await
            .expect("connect");
        subscriber
            .subscribe(Self::CHANNEL)
            .await
            .expect("SUBSCRIBE");
        Self {
            publisher: connection(url).await,
            heard,
            _subscriber: subscriber,
        }
    }

    /// `reps` relays, each after `HANDOFF_PAUSE`.
    async fn samples(&mut self, reps: u64) -> Samples {
        relays(
            &mut self.publisher,
            redis::cmd("PUBLISH").arg(Self::CHANNEL).arg("x"),
            &mut self.heard,
            reps,
        )
        .await
    }
}

/// `reps` times, after `HANDOFF_PAUSE` each: `publish` on `publisher`, then the time
/// until a subscriber's task hears it (the instant it sends on `heard`).
pub(crate) async fn relays(
    publisher: &mut impl redis::aio::ConnectionLike,
    publish: &redis::Cmd,
    heard: &mut tokio::sync::mpsc::UnboundedReceiver<Instant>,
    reps: u64,
) -> Samples {
    let mut samples = Vec::with_capacity(reps as usize);
    for _ in 0..reps {
        tokio::time::sleep(HANDOFF_PAUSE).await;
        let started = Instant::now();
        let _: i64 = publish.query_async(publisher).await.expect("publish");
        let heard = heard.recv().await.expect("the subscriber's task");
        samples.push(heard.duration_since(started));
    }
    Samples::new(samples)
}

/// Workload 4, hand-off: a holder holds a key and a waiter (another client) waits on it;
/// the time from the release to the waiter's acquire, against the PING round trip
/// measured in the same rounds. Ours waits with `.wait(..)`, rslock (2 ms retry delay)
/// by retrying.
pub(crate) async fn handoff(bench: &Bench) -> Vec<Figure> {
    const SIDES: [Side; 2] = [Side::Ours, Side::RslockFast];
    let mut pairs_of_clients = Vec::new();
    for side in SIDES {
        let holder = side.client(&bench.url).await;
        let waiter = side.client(&bench.url).await;
        handoff_round(&holder, &waiter, side, usize::MAX, 20).await;
        pairs_of_clients.push((holder, waiter));
    }
    let mut ping = connection(&bench.url).await;
    let mut relay = Relay::new(&bench.url).await;
    let reps = bench.per_round(bench.handoffs);
    let pings_per_round = bench.per_round(bench.ops);
    let (mut rtts, mut idle_rtts, mut relays) = (Vec::new(), Vec::new(), Vec::new());
    let mut results: [Percentiles; 2] = Default::default();
    for round in 0..bench.rounds {
        let busy = pings(&mut ping, pings_per_round, None).await;
        rtts.push(micros(busy.percentile(50.0)));
        let idle = pings(&mut ping, reps.min(100), Some(HANDOFF_PAUSE)).await;
        idle_rtts.push(micros(idle.percentile(50.0)));
        let relayed = relay.samples(reps.min(100)).await;
        relays.push(micros(relayed.percentile(50.0)));
        for index in bench.order(round, &SIDES) {
            let (holder, waiter) = &pairs_of_clients[index];
            results[index].push(&handoff_round(holder, waiter, SIDES[index], round, reps).await);
        }
    }
    let rtt = median(&rtts);
    let mut figures = vec![
        Figure::rounds("handoff", "PING p50 in these rounds", &rtts, "us"),
        Figure::rounds(
            "handoff",
            format!("PING p50, each after a {HANDOFF_PAUSE:?} pause"),
            &idle_rtts,
            "us",
        )
        .per_rtt(rtt),
        Figure::rounds(
            "handoff",
            format!("floor: PUBLISH -> subscriber, after a {HANDOFF_PAUSE:?} pause, p50"),
            &relays,
            "us",
        )
        .per_rtt(rtt),
    ];
    for (side, result) in SIDES.iter().zip(&results) {
        figures.extend(result.figures("handoff", side.label(), "release -> acquire", rtt));
    }
    figures.push(results[0].over_rtt("handoff", &rtts, 1.5));
    // What a hand-off costs beyond one round trip from idle (wake-ups included).
    figures.push(Figure::rounds(
        "handoff",
        "ours p50 / idle PING p50 (same round)",
        &ratios(&results[0].p50, &idle_rtts),
        "ratio",
    ));
    // And beyond the least a hand-off from idle needs: one message through the server to
    // another connection, and a task woken there.
    figures.push(Figure::rounds(
        "handoff",
        "ours p50 / floor p50 (same round)",
        &ratios(&results[0].p50, &relays),
        "ratio",
    ));
    figures
}

#[distributed_lock("bench:attr:<index>", locker = locker)]
async fn annotated(locker: &Locker, index: u64) -> Result<(), LockError> {
    std::hint::black_box(index);
    Ok(())
}

/// Workload 5, attribute overhead: workload 1 through an annotated function vs the guard API,
/// in alternating rounds so that drift of the machine affects both alike.
pub(crate) async fn attribute(bench: &Bench) -> Vec<Figure> {
    const ROUNDS: u64 = 10;
    let locker = locker(&bench.url);
    locker.ping().await.expect("ping");
    pairs(&Client::Ours(locker.clone()), "bench:warmup", 500).await;
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
