//! The Python original's seven scenarios as an axum service. Run several instances
//! against one Redis and they coordinate through it:
//!
//! ```text
//! cargo run --example service                               # port 3000, private redis-server
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example service -- --port 3001 --instance b
//! curl -X POST localhost:3000/payments/42                   # 200; a concurrent second call: 409
//! ```
//!
//! | endpoint | scenario | lock |
//! | --- | --- | --- |
//! | `POST /payments/{order_id}` | payment de-duplication: 409 when in progress or paid | guard, non-blocking |
//! | `PUT /inventory/{product_id}?stock=N`, `POST /inventory/{product_id}/decrease?quantity=N` | stock decrement: 503 when busy after 5 retries, 400 when short | attribute, `retry = 5` |
//! | `GET /cache/{key}` | cache refresh: one loader per expiry, the others read its value | guard, waiting |
//! | `POST /reports/daily/{date}` | daily report, once across instances: 409 when running | attribute, `auto_renew` |
//! | `POST /reports/users/{user_id}` | user report in two phases, `extend` between them | guard, `extend` |
//! | `POST /tasks/{task_id}/run` | task scheduling: other instances skip | attribute, `skip` |
//! | `POST /rate-limited/{user_id}` | one call per user per window: 429 | guard kept for its window |
//! | `POST /batches/{batch_id}` | batch processing (600 s lock): a second start while one runs is `already_processing` | attribute, `auto_renew`, `skip` |
//! | `GET /health` | 200 when Redis answers, else 503 | |
//! | `GET /locks/{name}` | admin: is a lock held, and for how long | inspection |
//! | `GET /metrics` | admin: the locks' metrics, Prometheus text format | |
//!
//! # Failures
//!
//! - Redis down (refused, paused, killed): every endpoint answers 503 with a short body and
//!   `Retry-After: 1` within about the command timeout (`--command-timeout-ms`, 2 s), for
//!   the locks and the application's own data alike (its connection tries to reconnect
//!   once per command, never for seconds). When Redis is back, so is the service: no
//!   restart.
//! - Error bodies say what happened in a few words; what went wrong inside (Redis's
//!   answer, which server) goes to the log, never to the client.
//!
//! # Admin endpoints
//!
//! `/locks/*` and `/metrics` are for operators: lock names and load figures are none of a
//! client's business. Started with `--admin-token` (or `ADMIN_TOKEN`), they answer only
//! requests with `Authorization: Bearer <token>`; without it they are open, which suits a
//! demo on 127.0.0.1 and nothing else.
//!
//! # Observability
//!
//! Each request is an `http.request` span; the lock's `lock.acquire` and `lock.hold` spans
//! nest in it, and `RUST_LOG=info,lock_runtime=debug` shows each step of a contention
//! burst. `GET /metrics` serves the lock metrics (`lock_acquisitions_total`, wait and
//! hold durations, waiters...) by label: the guard routes label their locks with their
//! template (`.label("payment:<order_id>")`), the attribute's locks carry the label the
//! attribute gives them (`unlabelled` while it gives none).

mod routes;
mod services;

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use lock_examples::{DemoRedis, fail, server_of};
use lock_runtime::Locker;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

#[derive(Parser, Debug)]
#[command(about = "The distributed-lock scenarios as an axum service")]
struct Cli {
    /// Port on 127.0.0.1 (0: any free port; the first line of output names it).
    #[arg(long, env = "PORT", default_value_t = 3000)]
    port: u16,
    /// Redis URL; unset: a private redis-server, stopped on exit.
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
    /// This instance's name, in responses and logs.
    #[arg(long, env = "INSTANCE", default_value = "instance-1")]
    instance: String,
    /// Simulated work, in milliseconds: the payment gateway, a cache load, a report phase,
    /// a batch chunk.
    #[arg(long, default_value_t = 100)]
    work_ms: u64,
    /// How long a loaded cache value lives, in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    cache_ttl_ms: u64,
    /// The rate limit's window, in milliseconds: one call per user per window.
    #[arg(long, default_value_t = 5_000)]
    rate_window_ms: u64,
    /// Bound on one Redis command, and on connecting, in milliseconds: how long a request
    /// can wait for a Redis that does not answer before it gets 503.
    #[arg(long, env = "COMMAND_TIMEOUT_MS", default_value_t = 2_000)]
    command_timeout_ms: u64,
    /// The bearer token `/locks/*` and `/metrics` require; unset: they are open.
    #[arg(long, env = "ADMIN_TOKEN")]
    admin_token: Option<String>,
}

/// What every handler gets from axum's `State`.
#[derive(Clone)]
pub(crate) struct AppState {
    /// The distributed locks.
    pub(crate) locker: Locker,
    /// The application's own data (orders, stock, cache).
    pub(crate) redis: ConnectionManager,
    /// This instance's name.
    pub(crate) instance: Arc<str>,
    /// Simulated work per step.
    pub(crate) work: Duration,
    /// Lifetime of a cache entry.
    pub(crate) cache_ttl: Duration,
    /// Rate-limit window.
    pub(crate) rate_window: Duration,
    /// Renders the metrics for `GET /metrics`.
    pub(crate) metrics: PrometheusHandle,
    /// What the admin endpoints require, if anything.
    pub(crate) admin_token: Option<Arc<str>>,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // Before the first lock: the locks' metrics go to the recorder installed when they
    // are first used.
    let metrics = PrometheusBuilder::new()
        .with_recommended_naming(true)
        .install_recorder()
        .unwrap_or_else(|error| fail(format!("cannot install the metrics recorder: {error}")));
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    let redis = DemoRedis::given_or_start(cli.redis_url.clone())
        .unwrap_or_else(|message| fail(message))
        .unwrap_or_else(|| {
            fail("no redis-server on PATH and REDIS_URL unset: install redis-server or set REDIS_URL")
        });
    let state = connect(&cli, redis.url(), metrics)
        .await
        .unwrap_or_else(|error| {
            fail(format!(
                "cannot reach Redis at {}: {error}",
                server_of(redis.url())
            ))
        });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", cli.port))
        .await
        .unwrap_or_else(|error| fail(format!("cannot listen on 127.0.0.1:{}: {error}", cli.port)));
    let address = listener.local_addr().unwrap_or_else(|error| fail(error));
    // Before the address is announced: a signal that follows must find its handler.
    let stop = shutdown();
    println!(
        "service {} listening on http://{address} (Redis: {})",
        cli.instance,
        redis.describe()
    );
    axum::serve(listener, routes::router(state))
        .with_graceful_shutdown(stop)
        .await
        .unwrap_or_else(|error| fail(error));
    // Returning drops `redis`: a private redis-server stops with the service.
}

/// Ctrl-C or SIGTERM (`kill`, a container stopping): stop taking requests, finish those
/// in flight. The handlers are installed when this is called, not when first awaited.
fn shutdown() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let interrupt = async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        #[cfg(unix)]
        let terminate = async {
            match terminate.as_mut() {
                Some(terminate) => drop(terminate.recv().await),
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            () = interrupt => {}
            () = terminate => {}
        }
    }
}

async fn connect(
    cli: &Cli,
    url: &str,
    metrics: PrometheusHandle,
) -> Result<AppState, Box<dyn std::error::Error>> {
    let timeout = Duration::from_millis(cli.command_timeout_ms);
    let locker = Locker::builder()
        .connect_timeout(timeout)
        .command_timeout(timeout)
        .redis(url)?;
    locker.ping().await?;
    // Like the locker's: one reconnection attempt per command, each step bounded, so a
    // request never waits seconds of reconnection back-off (redis-rs's default) to learn
    // that Redis is down.
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(0);
    let redis = ConnectionManager::new_with_config(redis::Client::open(url)?, config).await?;
    Ok(AppState {
        locker,
        redis,
        instance: cli.instance.as_str().into(),
        work: Duration::from_millis(cli.work_ms),
        cache_ttl: Duration::from_millis(cli.cache_ttl_ms),
        rate_window: Duration::from_millis(cli.rate_window_ms),
        metrics,
        admin_token: cli.admin_token.as_deref().map(Arc::from),
    })
}
