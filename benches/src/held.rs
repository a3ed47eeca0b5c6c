//! Workload 6, many held locks: 10,000 and 100,000 locks with auto-renewal, each size in a
//! fresh lockbench process (`--held-child`) so that its resident memory starts clean and
//! nothing freed by earlier workloads is reused.

use std::time::{Duration, Instant};

use lock_runtime::{LockGuard, Locker};
use serde::{Deserialize, Serialize};

use crate::report::Figure;
use crate::sides::Client;
use crate::stats::rss_bytes;
use crate::workloads::{Bench, command_calls, connection, pairs};

/// The sizes measured.
const SIZES: [usize; 2] = [10_000, 100_000];

/// The locks' TTL; each is renewed every third of it.
const TTL: Duration = Duration::from_secs(3);

/// Tasks that acquire (and release) the locks, each its share in turn.
const TASKS: usize = 16;

/// What a child process measured, as one JSON line on its stdout.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HeldRun {
    locks: usize,
    /// Resident memory after warming up, and the higher of after acquiring and after
    /// holding, in bytes.
    rss_before: u64,
    rss_held: u64,
    /// Calls Redis executed during the hold: script calls, and every command including
    /// those inside scripts.
    script_calls: u64,
    all_calls: u64,
    hold_seconds: f64,
    /// Locks whose guard said lost at the end of the hold, or whose release found them
    /// gone, whichever is more.
    lost: usize,
    keys_at_end: u64,
}

/// The workload: one child process per size, on the same server.
pub(crate) async fn held(bench: &Bench) -> Vec<Figure> {
    let mut figures = Vec::new();
    for locks in SIZES {
        let hold = bench.hold.as_secs().to_string();
        let args = ["--held-child", &locks.to_string(), "--url", &bench.url];
        let run: HeldRun = crate::child(&[&args[..], &["--hold-seconds", &hold]].concat()).await;
        figures.extend(run.figures());
    }
    figures
}

impl HeldRun {
    fn figures(&self) -> Vec<Figure> {
        let locks = self.locks;
        let per_lock = self.rss_held.saturating_sub(self.rss_before) as f64 / locks as f64;
        let limit = if locks >= 100_000 { 1024.0 } else { 2048.0 };
        // Client requests: the script calls if renewals use scripts, else every command.
        let requests = if self.script_calls > 0 {
            self.script_calls
        } else {
            self.all_calls
        };
        let requests_per_sec = requests as f64 / self.hold_seconds;
        let renewals_per_sec = locks as f64 * 3.0 / TTL.as_secs_f64();
        vec![
            Figure::new(
                "held",
                format!("{locks}: client RSS per held lock"),
                per_lock,
                "bytes",
            )
            .target(format!("<= {limit} bytes"), per_lock <= limit),
            Figure::new(
                "held",
                format!("{locks}: renewal requests/s on the server"),
                requests_per_sec,
                "1/s",
            )
            .target(
                "batched: <= 1/10 of lock renewals/s",
                requests_per_sec <= renewals_per_sec / 10.0,
            ),
            Figure::new(
                "held",
                format!("{locks}: commands/s incl. inside scripts"),
                self.all_calls as f64 / self.hold_seconds,
                "1/s",
            ),
            Figure::new(
                "held",
                format!("{locks}: lock renewals/s (TTL {TTL:?})"),
                renewals_per_sec,
                "1/s",
            ),
            Figure::new("held", format!("{locks}: lost"), self.lost as f64, "")
                .target("= 0", self.lost == 0),
            Figure::new(
                "held",
                format!("{locks}: keys in Redis at the end"),
                self.keys_at_end as f64,
                "",
            ),
        ]
    }
}

/// A lock with `TTL` and auto-renewal.
async fn renewed(locker: &Locker, name: String) -> LockGuard {
    locker
        .lock(name)
        .ttl(TTL)
        .auto_renew()
        .acquire()
        .await
        .expect("acquire")
}

/// The child: holds `locks` locks with auto-renewal for `hold`, then releases them.
pub(crate) async fn child(url: &str, locks: usize, hold: Duration) -> HeldRun {
    let locker = Locker::redis(url).expect("a valid URL");
    locker.ping().await.expect("ping");
    let mut stats = connection(url).await;
    // Warm up the allocator, the connection and the renewal task before the baseline.
    let warmup = renewed(&locker, format!("bench:held:warmup:{locks}")).await;
    pairs(
        &Client::Ours(locker.clone()),
        &format!("bench:held:warmup:{locks}"),
        100,
    )
    .await;
    let rss_before = rss_bytes().unwrap_or(0);
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let locker = locker.clone();
        tasks.spawn(async move {
            let share = (task..locks).step_by(TASKS);
            let mut guards: Vec<LockGuard> = Vec::with_capacity(share.len());
            for index in share {
                guards.push(renewed(&locker, format!("bench:held:{locks}:{index}")).await);
            }
            guards
        });
    }
    let mut shares = Vec::with_capacity(TASKS);
    while let Some(guards) = tasks.join_next().await {
        shares.push(guards.expect("an acquiring task panicked"));
    }
    let rss_acquired = rss_bytes().unwrap_or(0);
    let calls_before = command_calls(&mut stats).await;
    let started = Instant::now();
    tokio::time::sleep(hold).await;
    let calls_after = command_calls(&mut stats).await;
    let hold_seconds = started.elapsed().as_secs_f64();
    let rss_held = rss_bytes().unwrap_or(0).max(rss_acquired);
    let keys_at_end: u64 = redis::cmd("DBSIZE")
        .query_async(&mut stats)
        .await
        .expect("DBSIZE");
    let flagged = shares
        .iter()
        .flatten()
        .filter(|guard| guard.is_lost())
        .count();
    let mut tasks = tokio::task::JoinSet::new();
    for guards in shares {
        tasks.spawn(async move {
            let mut gone = 0;
            for guard in guards {
                if !guard.release().await.expect("release") {
                    gone += 1;
                }
            }
            gone
        });
    }
    let mut gone = 0;
    while let Some(share) = tasks.join_next().await {
        gone += share.expect("a releasing task panicked");
    }
    assert!(warmup.release().await.expect("release"));
    HeldRun {
        locks,
        rss_before,
        rss_held,
        script_calls: calls_after.scripts - calls_before.scripts,
        all_calls: calls_after.all - calls_before.all,
        hold_seconds,
        lost: flagged.max(gone),
        keys_at_end,
    }
}
