//! The flash sale ("seckill") that motivates distributed locks.
//!
//! One product with a small stock in Redis, several instances of a service (separate
//! processes: this binary in its `worker` mode), many concurrent buyers. Each purchase
//! reads the stock, creates the order, then decrements the stock. It runs without a lock
//! (oversold), with `#[distributed_lock("stock:<product>")]` (exactly the stock is sold),
//! and shows what a coarse lock costs: one global key vs one key per product.
//!
//! ```text
//! cargo run --example seckill                       # private redis-server, 3 x 100 buyers, stock 10
//! cargo run --example seckill -- --buyers 500 --stock 50
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example seckill
//! ```
//!
//! Without `REDIS_URL` it starts a private `redis-server` (stopped on exit); without one
//! on `PATH` it runs on the in-memory backend, with tasks as instances.

mod shop;

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use lock_examples::{DemoRedis, fail, sleep_until_unix, spawn_self, unix_millis};
use serde::{Deserialize, Serialize};
use shop::{Shop, ShopError, Tally};
use tokio::task::JoinSet;

#[derive(Parser)]
#[command(about = "A flash sale across service instances, without and with a distributed lock")]
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
    /// Service instances (processes).
    #[arg(long, default_value_t = 3)]
    instances: usize,
    /// Concurrent buyers per instance.
    #[arg(long, default_value_t = 100)]
    buyers: usize,
    /// Units of the product on sale.
    #[arg(long, default_value_t = 10)]
    stock: i64,
    /// Products in the global-vs-per-product comparison.
    #[arg(long, default_value_t = 20)]
    products: u32,
    /// Milliseconds a purchase spends creating the order, between reading and
    /// decrementing the stock.
    #[arg(long, default_value_t = 2)]
    work_ms: u64,
    /// Print each scenario's results as a JSON line instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// One service instance (started by the demo).
    #[command(hide = true)]
    Worker(Worker),
}

#[derive(Args, Clone)]
struct Worker {
    #[arg(long)]
    redis: String,
    #[arg(long)]
    namespace: String,
    #[arg(long, value_enum)]
    mode: Mode,
    #[arg(long)]
    instance: usize,
    #[arg(long)]
    buyers: usize,
    #[arg(long)]
    products: u32,
    #[arg(long)]
    work_ms: u64,
    /// Unix time in milliseconds at which every instance starts selling.
    #[arg(long)]
    start_at: u64,
}

/// How purchases are protected.
#[derive(Clone, Copy, Debug, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    NoLock,
    PerProduct,
    Global,
}

/// What one instance reports when its buyers are done.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Served {
    bought: u64,
    sold_out: u64,
    errors: u64,
    first_error: Option<String>,
    elapsed_ms: f64,
}

/// One line of the table.
#[derive(Debug, Serialize)]
struct Row {
    scenario: String,
    mode: Mode,
    products: u32,
    buyers: usize,
    stock: i64,
    sold: u64,
    oversold: u64,
    final_stock: i64,
    duplicates: u64,
    errors: u64,
    wall_ms: f64,
    purchases_per_sec: f64,
}

struct Scenario {
    label: String,
    mode: Mode,
    products: u32,
    stock_each: i64,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Worker(worker)) => run_worker(worker).await,
        None => run_demo(cli.demo).await,
    }
}

/// An instance process: serve its buyers, print one JSON line.
async fn run_worker(worker: Worker) {
    let shop = Shop::redis(&worker.redis, &worker.namespace)
        .await
        .unwrap_or_else(|error| fail(format!("instance {}: {error}", worker.instance)));
    let served = serve(shop, worker).await;
    println!(
        "{}",
        serde_json::to_string(&served).expect("plain data serializes")
    );
}

/// Runs `worker.buyers` concurrent purchases, all starting at `worker.start_at`.
async fn serve(shop: Shop, worker: Worker) -> Served {
    sleep_until_unix(worker.start_at).await;
    let started = Instant::now();
    let work = Duration::from_millis(worker.work_ms);
    let mut buyers = JoinSet::new();
    for buyer in 0..worker.buyers {
        let shop = shop.clone();
        let product =
            ((worker.instance * worker.buyers + buyer) as u64 % u64::from(worker.products)) as u32;
        buyers.spawn(async move {
            let bought = match worker.mode {
                Mode::NoLock => shop::purchase(&shop, product, work).await,
                Mode::PerProduct => shop::purchase_per_product(&shop, product, work).await,
                Mode::Global => shop::purchase_global(&shop, product, work).await,
            };
            shop.served().await.and(bought)
        });
    }
    let mut served = Served::default();
    while let Some(outcome) = buyers.join_next().await {
        match outcome.expect("a buyer panicked") {
            Ok(true) => served.bought += 1,
            Ok(false) => served.sold_out += 1,
            Err(error) => {
                served.errors += 1;
                served.first_error.get_or_insert_with(|| error.to_string());
            }
        }
    }
    served.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    served
}

async fn run_demo(demo: Demo) {
    let redis =
        DemoRedis::given_or_start(demo.redis_url.clone()).unwrap_or_else(|message| fail(message));
    let total = demo.instances * demo.buyers;
    match &redis {
        Some(redis) => println!(
            "seckill: {} instances (separate processes) x {} buyers, stock {}, against {}",
            demo.instances,
            demo.buyers,
            demo.stock,
            redis.describe()
        ),
        None => println!(
            "seckill: no redis-server on PATH and no REDIS_URL: using the in-memory backend, \
             {} instances as tasks of this process x {} buyers, stock {}",
            demo.instances, demo.buyers, demo.stock
        ),
    }
    let session = format!("seckill:{}-{}", std::process::id(), unix_millis());
    let stock_each =
        i64::try_from(total.div_ceil(demo.products.max(1) as usize)).unwrap_or(i64::MAX);
    let scenarios = [
        Scenario {
            label: "no lock".into(),
            mode: Mode::NoLock,
            products: 1,
            stock_each: demo.stock,
        },
        Scenario {
            label: "lock per product".into(),
            mode: Mode::PerProduct,
            products: 1,
            stock_each: demo.stock,
        },
        Scenario {
            label: format!("global lock, {} products", demo.products),
            mode: Mode::Global,
            products: demo.products,
            stock_each,
        },
        Scenario {
            label: format!("lock per product, {} products", demo.products),
            mode: Mode::PerProduct,
            products: demo.products,
            stock_each,
        },
    ];
    let mut rows = Vec::new();
    for (index, scenario) in scenarios.iter().enumerate() {
        let namespace = format!("{session}:{index}");
        let row = run_scenario(&demo, redis.as_ref(), &namespace, scenario)
            .await
            .unwrap_or_else(|error| fail(format!("{}: {error}", scenario.label)));
        if demo.json {
            println!(
                "{}",
                serde_json::to_string(&row).expect("plain data serializes")
            );
        }
        rows.push(row);
    }
    if !demo.json {
        print_table(&rows);
    }
}

async fn run_scenario(
    demo: &Demo,
    redis: Option<&DemoRedis>,
    namespace: &str,
    scenario: &Scenario,
) -> Result<Row, ShopError> {
    let shop = match redis {
        Some(redis) => Shop::redis(redis.url(), namespace)
            .await
            .unwrap_or_else(|error| {
                fail(format!(
                    "cannot reach Redis at {}: {error}",
                    lock_examples::server_of(redis.url())
                ))
            }),
        None => Shop::memory(namespace),
    };
    shop.stock_up(scenario.products, scenario.stock_each)
        .await?;
    let worker = |instance| Worker {
        redis: redis
            .map(|redis| redis.url().to_owned())
            .unwrap_or_default(),
        namespace: namespace.to_owned(),
        mode: scenario.mode,
        instance,
        buyers: demo.buyers,
        products: scenario.products,
        work_ms: demo.work_ms,
        // Processes take a moment to start; they all begin selling at this instant.
        start_at: unix_millis() + if redis.is_some() { 500 } else { 0 },
    };
    let mut instances = JoinSet::new();
    for instance in 0..demo.instances {
        let worker = worker(instance);
        if redis.is_some() {
            instances.spawn(run_instance_process(worker));
        } else {
            let shop = shop.clone();
            instances.spawn(async move { Ok(serve(shop, worker).await) });
        }
    }
    let total = (demo.instances * demo.buyers) as u64;
    let mut reports = Vec::new();
    let mut progress = tokio::time::interval(Duration::from_millis(100));
    let show_progress = std::io::stderr().is_terminal();
    while !instances.is_empty() {
        tokio::select! {
            Some(report) = instances.join_next() => {
                reports.push(report.expect("an instance task panicked").unwrap_or_else(|message| fail(message)));
            }
            _ = progress.tick(), if show_progress => {
                let served = shop.served_count().await?;
                eprint!("\r  {:<32} {served:>6}/{total} buyers served", scenario.label);
            }
        }
    }
    if show_progress {
        eprint!("\r{:80}\r", "");
    }
    let Tally {
        sold,
        duplicates,
        final_stock,
    } = shop.tally(scenario.products).await?;
    let stock = scenario.stock_each * i64::from(scenario.products);
    let wall_ms = reports
        .iter()
        .map(|served| served.elapsed_ms)
        .fold(0.0, f64::max);
    let errors = reports.iter().map(|served| served.errors).sum();
    if let Some(error) = reports
        .iter()
        .find_map(|served| served.first_error.as_ref())
    {
        eprintln!(
            "  {}: {errors} purchases failed, the first with: {error}",
            scenario.label
        );
    }
    Ok(Row {
        scenario: scenario.label.clone(),
        mode: scenario.mode,
        products: scenario.products,
        buyers: demo.instances * demo.buyers,
        stock,
        sold,
        oversold: sold.saturating_sub(u64::try_from(stock).unwrap_or(0)),
        final_stock,
        duplicates,
        errors,
        wall_ms,
        purchases_per_sec: sold as f64 / (wall_ms / 1000.0).max(f64::EPSILON),
    })
}

/// Starts one instance process and returns what it reports.
async fn run_instance_process(worker: Worker) -> Result<Served, String> {
    let args = [
        "worker".to_owned(),
        format!("--redis={}", worker.redis),
        format!("--namespace={}", worker.namespace),
        format!(
            "--mode={}",
            worker
                .mode
                .to_possible_value()
                .expect("no skipped modes")
                .get_name()
        ),
        format!("--instance={}", worker.instance),
        format!("--buyers={}", worker.buyers),
        format!("--products={}", worker.products),
        format!("--work-ms={}", worker.work_ms),
        format!("--start-at={}", worker.start_at),
    ];
    let failed = |why: String| format!("instance {} failed: {why}", worker.instance);
    let child = spawn_self(&args).map_err(|error| failed(error.to_string()))?;
    let output = child
        .wait_with_output()
        .await
        .map_err(|error| failed(error.to_string()))?;
    if !output.status.success() {
        return Err(failed(format!("it exited with {}", output.status)));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).map_err(|error| failed(format!("{error} in {stdout:?}")))
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:<32} {:>6} {:>9} {:>12} {:>11} {:>9} {:>12}",
        "scenario", "sold", "oversold", "final stock", "duplicates", "wall", "purchases/s"
    );
    for row in rows {
        println!(
            "{:<32} {:>6} {:>9} {:>12} {:>11} {:>6.0} ms {:>12.0}",
            row.scenario,
            row.sold,
            row.oversold,
            row.final_stock,
            row.duplicates,
            row.wall_ms,
            row.purchases_per_sec
        );
    }
    println!();
    let [unlocked, locked, global, per_product] = rows else {
        return;
    };
    if unlocked.oversold > 0 {
        println!(
            "Without a lock, {} buyers bought the {} units on sale: the stock ends at {}.",
            unlocked.sold, unlocked.stock, unlocked.final_stock
        );
    } else {
        println!(
            "Without a lock, the buyers happened not to overlap this time; more buyers \
             (--buyers) make the oversell show."
        );
    }
    if locked.oversold == 0 && locked.final_stock == 0 {
        println!(
            "With #[distributed_lock(\"stock:<product>\")], exactly {} units were sold and the stock ends at 0.",
            locked.sold
        );
    } else {
        println!("With the lock: {locked:?}: THIS IS A BUG, please report it.");
    }
    println!(
        "Over {} products, one lock per product sells {:.1}x faster than one global lock.",
        per_product.products,
        per_product.purchases_per_sec / global.purchases_per_sec.max(f64::EPSILON)
    );
}
