//! The `service` example, three processes against one private redis-server, driven
//! concurrently over HTTP.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use lock_runtime::testing::RedisServer;
use redis::Commands;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use support::{Service, eventually, redis};

/// Sends `count` requests at once, spread round-robin over the instances.
async fn burst(
    services: &[Service],
    method: Method,
    path: &str,
    count: usize,
) -> Vec<(StatusCode, Value, reqwest::header::HeaderMap)> {
    let client = reqwest::Client::new();
    let requests = (0..count).map(|index| {
        let url = format!("{}{path}", services[index % services.len()].base);
        let request = client.request(method.clone(), url);
        async move {
            let response = request.send().await.expect("the service answers");
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.json::<Value>().await.expect("a JSON body");
            (status, body, headers)
        }
    });
    join_all(requests).await
}

fn statuses(responses: &[(StatusCode, Value, reqwest::header::HeaderMap)]) -> BTreeMap<u16, usize> {
    let mut counts = BTreeMap::new();
    for (status, _, _) in responses {
        *counts.entry(status.as_u16()).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_payments_of_one_order_charge_it_once() {
    let server = RedisServer::start().unwrap();
    let services = Service::three(&server, &["--work-ms", "100"]);
    let responses = burst(&services, Method::POST, "/payments/order-42", 50).await;
    assert_eq!(
        statuses(&responses),
        BTreeMap::from([(200, 1), (409, 49)]),
        "{responses:?}"
    );
    let charges: u64 = redis(&server).get("orders:order-42:charges").unwrap();
    assert_eq!(charges, 1);
    let paid = responses
        .iter()
        .find(|(status, ..)| *status == 200)
        .unwrap();
    assert_eq!(paid.1["lock_held_to_end"], true);
    for (status, body, _) in &responses {
        if *status == 409 {
            let detail = body["detail"].as_str().unwrap();
            assert!(
                detail.contains("already being processed") || detail.contains("already paid"),
                "{detail}"
            );
        }
    }
    // What an operator sees: each instance's metrics count its own part of the burst.
    let mut counted = BTreeMap::new();
    for service in &services {
        let metrics = get(&format!("{}/metrics", service.base), None).await.1;
        for outcome in ["acquired", "busy"] {
            let series = format!(
                "lock_acquisitions_total{{lock=\"payment:<order_id>\",outcome=\"{outcome}\"}}"
            );
            *counted.entry(outcome).or_default() += metric(&metrics, &series);
        }
        let held = "lock_held{lock=\"payment:<order_id>\"}";
        assert_eq!(metric(&metrics, held), 0.0, "{metrics}");
    }
    assert_eq!(counted, BTreeMap::from([("acquired", 1.0), ("busy", 49.0)]));
}

/// A GET with an optional bearer token: its status and body text.
async fn get(url: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the service answers");
    (response.status(), response.text().await.expect("a body"))
}

/// The value of `series` in a Prometheus text page (0 when absent).
fn metric(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn hundred_concurrent_decrements_sell_exactly_the_stock() {
    const STOCK: i64 = 10;
    let server = RedisServer::start().unwrap();
    let services = Service::three(&server, &[]);
    let set = burst(
        &services[..1],
        Method::PUT,
        &format!("/inventory/sku-1?stock={STOCK}"),
        1,
    )
    .await;
    assert_eq!(set[0].0, 200);
    let responses = burst(
        &services,
        Method::POST,
        "/inventory/sku-1/decrease?quantity=1",
        100,
    )
    .await;
    let counts = statuses(&responses);
    eprintln!("decrements: {counts:?}");
    assert!(
        counts.keys().all(|status| [200, 400, 503].contains(status)),
        "{counts:?}"
    );
    assert_eq!(counts.get(&200), Some(&(STOCK as usize)), "{counts:?}");
    // Each sale saw a different stock level: no two decrements read the same value.
    let mut remaining: Vec<i64> = responses
        .iter()
        .filter(|(status, ..)| *status == 200)
        .map(|(_, body, _)| body["remaining_inventory"].as_i64().unwrap())
        .collect();
    remaining.sort_unstable();
    assert_eq!(remaining, (0..STOCK).collect::<Vec<_>>());
    let stock: i64 = redis(&server).get("inventory:sku-1").unwrap();
    assert_eq!(stock, 0);
    for (status, body, _) in &responses {
        if *status == 400 {
            assert!(
                body["detail"]
                    .as_str()
                    .unwrap()
                    .contains("not enough stock")
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_allows_one_call_per_user_per_window() {
    let server = RedisServer::start().unwrap();
    let services = Service::three(&server, &["--rate-window-ms", "1500"]);
    let responses = burst(&services, Method::POST, "/rate-limited/user-1", 30).await;
    assert_eq!(statuses(&responses), BTreeMap::from([(200, 1), (429, 29)]));
    let (_, _, headers) = responses
        .iter()
        .find(|(status, ..)| *status == 429)
        .unwrap();
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
    // Another user has a window of their own.
    let other = burst(&services, Method::POST, "/rate-limited/user-2", 1).await;
    assert_eq!(other[0].0, 200);
    // The lock was kept, not released: the window closes only when it expires.
    let mut connection = redis(&server);
    eventually("the window of user-1 has passed", || {
        !connection
            .exists::<_, bool>("lock:{rate_limit:user-1}")
            .unwrap()
    });
    let next = burst(&services, Method::POST, "/rate-limited/user-1", 10).await;
    assert_eq!(statuses(&next), BTreeMap::from([(200, 1), (429, 9)]));
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_is_loaded_once_per_expiry() {
    let server = RedisServer::start().unwrap();
    let services = Service::three(&server, &["--cache-ttl-ms", "1000", "--work-ms", "100"]);
    let mut connection = redis(&server);
    for expiry in 1..=2_u64 {
        let responses = burst(&services, Method::GET, "/cache/hot", 30).await;
        assert_eq!(statuses(&responses), BTreeMap::from([(200, 30)]));
        let loads: u64 = connection.get("cache:loads:hot").unwrap();
        assert_eq!(loads, expiry, "the loader ran more than once");
        let loaded = responses
            .iter()
            .filter(|(_, body, _)| body["source"] == "loaded")
            .count();
        assert_eq!(loaded, 1);
        let values: Vec<&Value> = responses
            .iter()
            .map(|(_, body, _)| &body["value"])
            .collect();
        assert!(values.iter().all(|value| *value == values[0]), "{values:?}");
        eventually("the cached value has expired", || {
            !connection.exists::<_, bool>("cache:value:hot").unwrap()
        });
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cache_key_cannot_name_another_keys_load_counter() {
    // Broke: `x`'s counter lived at `cache:x:loads`, the value of key `x:loads`, so
    // `GET /cache/x:loads` then `GET /cache/x` answered 500 "value is not an integer".
    let server = RedisServer::start().unwrap();
    let services = Service::three(&server, &["--work-ms", "10"]);
    for key in ["x:loads", "x", "x:loads", "x"] {
        let response = burst(&services, Method::GET, &format!("/cache/{key}"), 1).await;
        let (status, body, _) = &response[0];
        assert_eq!(*status, 200, "{key}: {body}");
        assert!(body["value"].as_str().unwrap().starts_with(key), "{body}");
    }
    let mut connection = redis(&server);
    for key in ["x", "x:loads"] {
        let loads: u64 = connection.get(format!("cache:loads:{key}")).unwrap();
        assert_eq!(
            loads, 1,
            "{key} was loaded once and then served from the cache"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_tasks_and_batches_run_on_one_instance_at_a_time() {
    let server = RedisServer::start().unwrap();
    // Long enough that every request of a burst arrives while the first one runs.
    let services = Service::three(&server, &["--work-ms", "500"]);

    let daily = burst(&services, Method::POST, "/reports/daily/2026-11-22", 6).await;
    assert_eq!(
        statuses(&daily),
        BTreeMap::from([(200, 1), (409, 5)]),
        "{daily:?}"
    );

    let tasks = burst(&services, Method::POST, "/tasks/cleanup/run", 6).await;
    assert_eq!(statuses(&tasks), BTreeMap::from([(200, 6)]));
    let completed = tasks
        .iter()
        .filter(|(_, body, _)| body["status"] == "completed")
        .count();
    assert_eq!(completed, 1, "{tasks:?}");
    let runs: u64 = redis(&server).get("tasks:cleanup:runs").unwrap();
    assert_eq!(runs, 1);

    // A second start while one runs is not an error: the original's `already_processing`.
    let batches = burst(&services, Method::POST, "/batches/b-1", 6).await;
    assert_eq!(
        statuses(&batches),
        BTreeMap::from([(200, 6)]),
        "{batches:?}"
    );
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for (_, body, _) in &batches {
        *by_status
            .entry(body["status"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        by_status,
        BTreeMap::from([("already_processing".into(), 5), ("completed".into(), 1)])
    );
    let chunks: BTreeMap<String, u64> = redis(&server).hgetall("batches:b-1").unwrap();
    assert_eq!(chunks.values().copied().collect::<Vec<_>>(), [1, 1, 1]);

    let report = burst(&services, Method::POST, "/reports/users/u-7", 1).await;
    let (status, body, _) = &report[0];
    assert_eq!(*status, 200, "{body}");
    assert_eq!(body["status"], "completed");
    let before = body["remaining_ms_before_extend"].as_u64().unwrap();
    let after = body["remaining_ms_after_extend"].as_u64().unwrap();
    assert!(
        after > before + 50_000,
        "extend added 60 s: {before} -> {after}"
    );

    let status = burst(&services, Method::GET, "/locks/reports/users/u-7", 1).await;
    assert_eq!(status[0].1["locked"], false, "released after the report");
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// The requests of the outage tests: every kind of endpoint, locks and data.
const EVERY_KIND: [(&str, &str); 8] = [
    ("POST", "/payments/o-1"),
    ("POST", "/inventory/p-1/decrease?quantity=1"),
    ("GET", "/inventory/p-1"),
    ("GET", "/cache/k"),
    ("POST", "/rate-limited/u-1"),
    ("POST", "/batches/b-9"),
    ("POST", "/tasks/t-1/run"),
    ("GET", "/health"),
];

/// Sends one request of each kind at once; asserts each is a short 503 (no Redis
/// error, address or key in the body; `Retry-After`) within `bound`.
async fn assert_unavailable(service: &Service, bound: Duration) {
    let client = reqwest::Client::new();
    let requests = EVERY_KIND.map(|(method, path)| {
        let request = client.request(method.parse().unwrap(), format!("{}{path}", service.base));
        async move {
            let started = Instant::now();
            let response = request.send().await.expect("the service answers");
            let took = started.elapsed();
            let status = response.status();
            let retry_after = response.headers().get("retry-after").cloned();
            let body = response.text().await.unwrap();
            (path, status, retry_after, body, took)
        }
    });
    let answers = join_all(requests).await;
    let slowest = answers.iter().map(|answer| answer.4).max();
    eprintln!("503s within {slowest:?}");
    for (path, status, retry_after, body, took) in answers {
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(body, r#"{"detail":"temporarily unavailable"}"#, "{path}");
        assert!(retry_after.is_some(), "{path}: no Retry-After");
        assert!(took < bound, "{path} took {took:?}");
    }
}

/// Polls until every kind of request succeeds again (not 5xx), for up to 15 s.
async fn assert_recovers(service: &Service) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    for (method, path) in EVERY_KIND {
        loop {
            let response = client
                .request(method.parse().unwrap(), format!("{}{path}", service.base))
                .send()
                .await
                .expect("the service answers");
            if !response.status().is_server_error() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{path} still {}",
                response.status()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_outage_is_a_quick_503_everywhere_and_the_service_recovers() {
    // Broke: every endpoint answered 500 with Redis's error, and the data connection's
    // reconnection back-off held a request up to 9.5 s. With a 1 s command timeout, 5 s
    // proves neither the back-off nor any lock wait (10 s) is sat out; the bound allows
    // one reconnection attempt plus one command, and a loaded machine.
    const BOUND: Duration = Duration::from_secs(5);
    let mut server = RedisServer::start().unwrap();
    let service = Service::start(&server, "a", &["--command-timeout-ms", "1000"]);
    assert_recovers(&service).await;

    server.pause().unwrap(); // answers nothing: every command runs into its timeout
    assert_unavailable(&service, BOUND).await;
    server.resume().unwrap();
    assert_recovers(&service).await;

    server.stop(); // killed: connections refused
    assert_unavailable(&service, BOUND).await;
    server.restart().unwrap();
    assert_recovers(&service).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_endpoints_need_the_token_when_one_is_set() {
    let server = RedisServer::start().unwrap();
    let service = Service::start(&server, "a", &["--admin-token", "s3cret"]);
    for path in ["/locks/payment:o-1", "/metrics"] {
        let url = format!("{}{path}", service.base);
        let (status, body) = get(&url, None).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(get(&url, Some("wrong")).await.0, 401, "{path}");
        assert_eq!(get(&url, Some("s3cret")).await.0, 200, "{path}");
    }
    // The other endpoints are not admin endpoints.
    let paid = burst(
        std::slice::from_ref(&service),
        Method::POST,
        "/payments/o-1",
        1,
    )
    .await;
    assert_eq!(paid[0].0, 200);
}

#[test]
fn sigterm_stops_the_service_and_its_private_redis_server() {
    // Broke: a `kill` (SIGTERM) ended the service without a shutdown, so the private
    // redis-server it had started was left running.
    let mut child = std::process::Command::new(support::example("service"))
        .args(["--port", "0"])
        .env_remove("REDIS_URL")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the service example");
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    let port: u16 = first
        .rsplit("127.0.0.1:")
        .next()
        .and_then(|rest| rest.trim_end_matches([')', '\n']).parse().ok())
        .unwrap_or_else(|| panic!("no private redis-server in {first:?}"));
    let redis_up = || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    assert!(redis_up(), "{first}");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "a clean exit on SIGTERM: {status}");
    eventually("the private redis-server has stopped", || !redis_up());
}
