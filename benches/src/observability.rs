//! Observability overhead: workload 1 (ours, 1 task, acquire+release on fresh keys) in a
//! process with a tracing subscriber (the `fmt` layer writing to a sink, at INFO, the level
//! of the crate's spans) and a metrics recorder installed (metrics-util's debugging
//! recorder), against a process with neither. A subscriber and a recorder are global for
//! a process, so each measurement runs in a child process of its own (`--obs-child`); the
//! rounds alternate the two kinds of child and rotate which goes first.

use lock_runtime::Locker;
use serde::{Deserialize, Serialize};

use crate::report::Figure;
use crate::sides::Client;
use crate::stats::{cpu_seconds, micros};
use crate::workloads::{Bench, pairs};

/// What a child measures with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Listening {
    /// No subscriber, no recorder.
    Off,
    /// A `fmt` subscriber to a sink at INFO, and a debugging metrics recorder.
    On,
}

/// A child's result, as one JSON line on its stdout.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ObsRun {
    p50: f64,
    p99: f64,
    /// This process's CPU time per pair, in microseconds (less sensitive than latency to
    /// how long the machine takes to wake up).
    cpu: f64,
}

/// The child: installs what `listening` says, warms up, then measures `ops` pairs.
pub(crate) async fn child(url: &str, listening: Listening, ops: u64) -> ObsRun {
    if listening == Listening::On {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        metrics_util::debugging::DebuggingRecorder::new()
            .install()
            .expect("the only recorder");
    }
    let locker = Locker::redis(url).expect("a valid URL");
    locker.ping().await.expect("ping");
    let client = Client::Ours(locker);
    pairs(&client, "bench:obs:warmup", 500).await;
    let prefix = format!("bench:obs:{}:{:?}", std::process::id(), listening);
    let cpu = cpu_seconds();
    let samples = pairs(&client, &prefix, ops).await;
    ObsRun {
        p50: micros(samples.percentile(50.0)),
        p99: micros(samples.percentile(99.0)),
        cpu: (cpu_seconds() - cpu) * 1e6 / ops.max(1) as f64,
    }
}

/// Runs one child and reads its result.
async fn run_child(bench: &Bench, listening: Listening, ops: u64) -> ObsRun {
    let listening = match listening {
        Listening::Off => "off",
        Listening::On => "on",
    };
    crate::child(&[
        "--obs-child",
        listening,
        "--url",
        &bench.url,
        "--ops",
        &ops.to_string(),
    ])
    .await
}

/// The workload: per round, one child of each kind, in rotated order.
pub(crate) async fn observability(bench: &Bench) -> Vec<Figure> {
    const KINDS: [Listening; 2] = [Listening::Off, Listening::On];
    let ops = bench.per_round(bench.ops);
    let mut results: [Vec<ObsRun>; 2] = Default::default();
    for round in 0..bench.rounds {
        for offset in 0..KINDS.len() {
            let index = (round + offset) % KINDS.len();
            results[index].push(run_child(bench, KINDS[index], ops).await);
        }
    }
    let p50 = |index: usize| results[index].iter().map(|run| run.p50).collect::<Vec<_>>();
    let p99 = |index: usize| results[index].iter().map(|run| run.p99).collect::<Vec<_>>();
    let cpu = |index: usize| results[index].iter().map(|run| run.cpu).collect::<Vec<_>>();
    let ratio: Vec<f64> = p50(1)
        .iter()
        .zip(p50(0))
        .map(|(on, off)| on / off)
        .collect();
    let mut figures = Vec::new();
    for (index, label) in ["nothing listens", "subscriber + recorder"]
        .iter()
        .enumerate()
    {
        figures.push(
            Figure::rounds(
                "observe",
                format!("{label}: acquire+release p50"),
                &p50(index),
                "us",
            )
            .per_rtt(bench.rtt),
        );
        figures.push(Figure::rounds(
            "observe",
            format!("{label}: acquire+release p99"),
            &p99(index),
            "us",
        ));
        figures.push(Figure::rounds(
            "observe",
            format!("{label}: client CPU per pair"),
            &cpu(index),
            "us",
        ));
    }
    figures.push(Figure::rounds(
        "observe",
        "listened / not (client CPU per pair)",
        &crate::workloads::ratios(&cpu(1), &cpu(0)),
        "ratio",
    ));
    figures.push(Figure::rounds("observe", "listened / not (p50)", &ratio, "ratio").at_most(1.02));
    figures
}
