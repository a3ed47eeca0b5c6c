//! The `service` example, three processes against one private redis-server, driven
//! concurrently over HTTP.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

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
        let loads: u64 = connection.get("cache:hot:loads").unwrap();
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
            !connection.exists::<_, bool>("cache:hot").unwrap()
        });
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

    let batches = burst(&services, Method::POST, "/batches/b-1", 6).await;
    assert_eq!(statuses(&batches), BTreeMap::from([(200, 1), (409, 5)]));
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
