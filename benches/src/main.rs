//! `lockbench`: measures lock-runtime against Redis's own round trip, on private
//! redis-servers it starts itself.
//!
//! ```text
//! cargo run --release -p benches --bin lockbench                  # every workload
//! cargo run --release -p benches --bin lockbench -- contended held # some of them
//! cargo run --release -p benches --bin lockbench -- --json         # JSON lines
//! ```

mod report;
mod stats;
mod workloads;

use std::time::Duration;

use clap::{Parser, ValueEnum};
use lock_runtime::testing::RedisServer;

use workloads::Bench;

#[derive(Parser)]
#[command(
    about = "Load generator for lock-runtime; figures are given as ratios to Redis's PING round trip"
)]
struct Cli {
    /// Workloads to run (default: all).
    #[arg(value_enum)]
    workloads: Vec<Workload>,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
    /// Operations of the latency workloads (and PINGs of the baseline).
    #[arg(long, default_value_t = 20_000)]
    ops: u64,
    /// Seconds of the timed workloads (throughput, contended).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Seconds the many-held-locks workload holds its locks.
    #[arg(long, default_value_t = 30)]
    hold_seconds: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    Latency,
    Throughput,
    Contended,
    Attribute,
    Held,
    Redlock,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let workloads = if cli.workloads.is_empty() {
        Workload::value_variants().to_vec()
    } else {
        cli.workloads.clone()
    };
    let start = || {
        RedisServer::start().unwrap_or_else(|error| {
            eprintln!("error: {error}");
            std::process::exit(1)
        })
    };
    let server = start();
    let redlock: Vec<RedisServer> = if workloads.contains(&Workload::Redlock) {
        (0..5).map(|_| start()).collect()
    } else {
        Vec::new()
    };
    let (rtt, mut figures) = workloads::rtt(&server.url(), cli.ops).await;
    let bench = Bench {
        url: server.url(),
        redlock_urls: redlock.iter().map(RedisServer::url).collect(),
        rtt,
        ops: cli.ops,
        duration: Duration::from_secs(cli.seconds),
        hold: Duration::from_secs(cli.hold_seconds),
    };
    for workload in workloads {
        let results = match workload {
            Workload::Latency => workloads::latency(&bench).await,
            Workload::Throughput => workloads::throughput(&bench).await,
            Workload::Contended => workloads::contended(&bench).await,
            Workload::Attribute => workloads::attribute(&bench).await,
            Workload::Held => workloads::held(&bench).await,
            Workload::Redlock => workloads::redlock(&bench).await,
        };
        if cli.json {
            for figure in &results {
                println!("{}", serde_json::to_string(figure).expect("plain data"));
            }
        } else {
            eprintln!(
                "done: {}",
                results.first().map_or("", |figure| figure.workload)
            );
        }
        figures.extend(results);
    }
    if !cli.json {
        report::table(&figures);
    }
}
