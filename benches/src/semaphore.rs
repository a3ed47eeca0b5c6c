//! A semaphore's permit against a mutex: `locker.semaphore(name, 4)` acquire+release on
//! fresh names against `locker.lock(name)`, 1 task, in interleaved rounds.

use std::time::Instant;

use lock_runtime::Locker;

use crate::report::Figure;
use crate::stats::{Samples, micros};
use crate::workloads::{Bench, ratios};

/// The permits of the measured semaphore.
const PERMITS: u32 = 4;

/// `ops` sequential acquire+release pairs on fresh names `{prefix}:{index}`, of a mutex or
/// (with `permits`) of a semaphore's permit.
async fn pairs(locker: &Locker, prefix: &str, permits: Option<u32>, ops: u64) -> Samples {
    let mut samples = Vec::with_capacity(ops as usize);
    for index in 0..ops {
        let name = format!("{prefix}:{index}");
        let started = Instant::now();
        let request = match permits {
            None => locker.lock(name),
            Some(permits) => locker.semaphore(name, permits),
        };
        let guard = request.acquire().await.expect("acquire");
        assert!(guard.release().await.expect("release"), "lost a permit");
        samples.push(started.elapsed());
    }
    Samples::new(samples)
}

/// The workload: mutex and semaphore rounds, rotating which goes first.
pub(crate) async fn semaphore(bench: &Bench) -> Vec<Figure> {
    const KINDS: [Option<u32>; 2] = [None, Some(PERMITS)];
    let locker = Locker::redis(&bench.url).expect("a valid URL");
    locker.ping().await.expect("ping");
    for permits in KINDS {
        pairs(&locker, "bench:sem:warmup", permits, 500).await;
    }
    let per_round = bench.per_round(bench.ops);
    let mut p50: [Vec<f64>; 2] = Default::default();
    for round in 0..bench.rounds {
        for offset in 0..KINDS.len() {
            let index = (round + offset) % KINDS.len();
            let prefix = format!("bench:sem:{round}:{index}");
            let samples = pairs(&locker, &prefix, KINDS[index], per_round).await;
            p50[index].push(micros(samples.percentile(50.0)));
        }
    }
    vec![
        Figure::rounds("semaphore", "mutex acquire+release p50", &p50[0], "us").per_rtt(bench.rtt),
        Figure::rounds(
            "semaphore",
            format!("semaphore({PERMITS}) acquire+release p50"),
            &p50[1],
            "us",
        )
        .per_rtt(bench.rtt),
        Figure::rounds(
            "semaphore",
            "semaphore / mutex (p50)",
            &ratios(&p50[1], &p50[0]),
            "ratio",
        ),
    ]
}
