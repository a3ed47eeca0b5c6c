//! `lockbench`: measures lock-runtime against Redis's own round trip and, side by side in
//! the same run, against rslock (the most used Redis lock crate), on private redis-servers
//! it starts itself.
//!
//! ```text
//! cargo run --release -p benches --bin lockbench                  # every workload
//! cargo run --release -p benches --bin lockbench -- contended held # some of them
//! cargo run --release -p benches --bin lockbench -- --quick        # fewer rounds and ops
//! cargo run --release -p benches --bin lockbench -- --json         # JSON lines
//! cargo run --release -p benches --bin lockbench -- handoff --only ours  # one side (profiling)
//! ```

mod cluster;
mod held;
mod observability;
mod redlock;
mod report;
mod semaphore;
mod sides;
mod stats;
mod workloads;

use std::time::Duration;

use clap::{Parser, ValueEnum};
use lock_runtime::testing::RedisServer;

use workloads::Bench;

#[derive(Parser)]
#[command(
    about = "Load generator for lock-runtime, side by side with rslock; figures are also given \
             as ratios to Redis's PING round trip"
)]
struct Cli {
    /// Workloads to run (default: all).
    #[arg(value_enum)]
    workloads: Vec<Workload>,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
    /// Fewer rounds, operations and seconds (3 rounds, 2,000 ops, 1 s rounds, 5 s hold,
    /// 300 hand-offs), for iterating; explicit options still win.
    #[arg(long)]
    quick: bool,
    /// Interleaved rounds of the side-by-side workloads [default: 5].
    #[arg(long)]
    rounds: Option<usize>,
    /// Operations of the latency workloads per side, over all rounds (and PINGs of the
    /// baseline) [default: 20000].
    #[arg(long)]
    ops: Option<u64>,
    /// Seconds of one round of the timed workloads (throughput, contended), per side
    /// [default: 3].
    #[arg(long)]
    seconds: Option<u64>,
    /// Hand-offs per side, over all rounds [default: 2000].
    #[arg(long)]
    handoffs: Option<u64>,
    /// Seconds the many-held-locks workload holds its locks, per size [default: 30].
    #[arg(long)]
    hold_seconds: Option<u64>,
    /// Run only this side of the side-by-side workloads (for profiling one library);
    /// the figures of the other sides, and ratios to them, are left out.
    #[arg(long, hide = true, value_enum)]
    only: Option<sides::Side>,
    /// Internal: run the many-held-locks workload for this many locks in this process,
    /// on the server at --url, and print its result as one JSON line.
    #[arg(long, hide = true, requires = "url")]
    held_child: Option<usize>,
    /// Internal: run one measurement of the observability workload in this process, with
    /// a subscriber and a recorder installed or not, on the server at --url, and print
    /// its result as one JSON line.
    #[arg(long, hide = true, requires = "url", value_enum)]
    obs_child: Option<observability::Listening>,
    /// Internal: the server of --held-child and --obs-child.
    #[arg(long, hide = true)]
    url: Option<String>,
}

impl Cli {
    /// An option's value: given, else the quick or the normal default.
    fn pick<T>(&self, given: Option<T>, quick: T, normal: T) -> T {
        given.unwrap_or(if self.quick { quick } else { normal })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    Latency,
    Throughput,
    Contended,
    Handoff,
    Attribute,
    Held,
    Redlock,
    Observability,
    Semaphore,
    Cluster,
}

/// Runs this lockbench again with `args` (a `--*-child` measurement) and reads the JSON
/// line it prints last.
async fn child<T: serde::de::DeserializeOwned>(args: &[&str]) -> T {
    let exe = std::env::current_exe().expect("the running lockbench");
    let output = tokio::process::Command::new(&exe)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .expect("run lockbench as a child");
    assert!(output.status.success(), "lockbench {args:?} failed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("the child's JSON line")
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let hold = Duration::from_secs(cli.pick(cli.hold_seconds, 5, 30));
    if let (Some(locks), Some(url)) = (cli.held_child, &cli.url) {
        let run = held::child(url, locks, hold).await;
        println!("{}", serde_json::to_string(&run).expect("plain data"));
        return;
    }
    if let (Some(listening), Some(url)) = (cli.obs_child, &cli.url) {
        let ops = cli.pick(cli.ops, 2_000, 20_000);
        let run = observability::child(url, listening, ops).await;
        println!("{}", serde_json::to_string(&run).expect("plain data"));
        return;
    }
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
    let ops = cli.pick(cli.ops, 2_000, 20_000);
    let (rtt, mut figures) = workloads::rtt(&server.url(), ops).await;
    let bench = Bench {
        url: server.url(),
        redlock_urls: redlock.iter().map(RedisServer::url).collect(),
        rtt,
        rounds: cli.pick(cli.rounds, 3, 5).max(1),
        ops,
        duration: Duration::from_secs(cli.pick(cli.seconds, 1, 3)),
        handoffs: cli.pick(cli.handoffs, 300, 2_000),
        hold,
        only: cli.only,
    };
    for workload in workloads {
        let results = match workload {
            Workload::Latency => workloads::latency(&bench).await,
            Workload::Throughput => workloads::throughput(&bench).await,
            Workload::Contended => workloads::contended(&bench).await,
            Workload::Handoff => workloads::handoff(&bench).await,
            Workload::Attribute => workloads::attribute(&bench).await,
            Workload::Held => held::held(&bench).await,
            Workload::Redlock => redlock::redlock(&bench).await,
            Workload::Observability => observability::observability(&bench).await,
            Workload::Semaphore => semaphore::semaphore(&bench).await,
            Workload::Cluster => cluster::cluster(&bench).await,
        };
        let results = results
            .into_iter()
            .filter(|figure| cli.only.is_none_or(|only| only.measured(&figure.metric)))
            .collect::<Vec<_>>();
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
