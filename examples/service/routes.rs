//! HTTP routes: the manual scenarios use the guard API here; the others call the
//! attribute-locked service layer.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lock_runtime::LockError;
use redis::AsyncCommands;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::services::{self, ReportService, ServiceError};

/// Every route of the service.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/payments/{order_id}", post(process_payment))
        .route("/inventory/{product_id}", get(inventory).put(set_inventory))
        .route("/inventory/{product_id}/decrease", post(decrease_inventory))
        .route("/cache/{key}", get(cached))
        .route("/reports/daily/{date}", post(daily_report))
        .route("/reports/users/{user_id}", post(user_report))
        .route("/tasks/{task_id}/run", post(run_task))
        .route("/rate-limited/{user_id}", post(rate_limited))
        .route("/batches/{batch_id}", post(process_batch))
        .route("/locks/{*name}", get(lock_status))
        .with_state(state)
}

/// An error response: a status and `{"detail": "..."}`, as FastAPI's `HTTPException`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    detail: String,
    retry_after: Option<Duration>,
}

impl ApiError {
    fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(status = %self.status, detail = %self.detail, "request failed");
        }
        let mut response = (self.status, Json(json!({ "detail": self.detail }))).into_response();
        if let Some(after) = self.retry_after {
            let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A lock or Redis failure that no scenario expects: 500 (contention: 503).
impl From<LockError> for ApiError {
    fn from(error: LockError) -> Self {
        let status = if error.is_contention() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        Self::new(status, error.to_string())
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(error: redis::RedisError) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, format!("redis: {error}"))
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Busy(_) => Self::new(StatusCode::CONFLICT, error.to_string()),
            ServiceError::OutOfStock { .. } => {
                Self::new(StatusCode::BAD_REQUEST, error.to_string())
            }
            ServiceError::Lock(error) => error.into(),
            ServiceError::Redis(error) => error.into(),
        }
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

async fn health(State(state): State<AppState>) -> ApiResult {
    state.locker.ping().await?;
    Ok(Json(
        json!({ "instance": &*state.instance, "status": "ok" }),
    ))
}

/// Scenario 1: process a payment once. A concurrent second click finds the lock taken
/// (409, without waiting); a later one finds the order paid (409).
async fn process_payment(State(state): State<AppState>, Path(order_id): Path<String>) -> ApiResult {
    let Some(lock) = state
        .locker
        .lock(format!("payment:{order_id}"))
        .ttl(Duration::from_secs(30))
        .try_acquire()
        .await?
    else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("order {order_id} is already being processed"),
        ));
    };
    let mut redis = state.redis.clone();
    let paid_key = format!("orders:{order_id}:paid_by");
    if let Some(paid_by) = redis.get::<_, Option<String>>(&paid_key).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("order {order_id} is already paid (by {paid_by})"),
        ));
    }
    tokio::time::sleep(state.work).await; // call the payment gateway
    let () = redis.set(&paid_key, &*state.instance).await?;
    let _: u64 = redis.incr(format!("orders:{order_id}:charges"), 1).await?;
    // `release` reports whether the lock was still ours at the end.
    let held_to_end = lock.release().await?;
    if !held_to_end {
        tracing::error!(%order_id, "the payment lock expired before the payment finished");
    }
    Ok(Json(json!({
        "order_id": order_id,
        "status": "success",
        "instance": &*state.instance,
        "lock_held_to_end": held_to_end,
    })))
}

#[derive(Deserialize)]
struct Quantity {
    quantity: i64,
}

#[derive(Deserialize)]
struct Stock {
    stock: i64,
}

async fn inventory(State(state): State<AppState>, Path(product_id): Path<String>) -> ApiResult {
    let stock: Option<i64> = state
        .redis
        .clone()
        .get(format!("inventory:{product_id}"))
        .await?;
    Ok(Json(
        json!({ "product_id": product_id, "stock": stock.unwrap_or(0) }),
    ))
}

async fn set_inventory(
    State(state): State<AppState>,
    Path(product_id): Path<String>,
    Query(Stock { stock }): Query<Stock>,
) -> ApiResult {
    let () = state
        .redis
        .clone()
        .set(format!("inventory:{product_id}"), stock)
        .await?;
    Ok(Json(json!({ "product_id": product_id, "stock": stock })))
}

/// Scenario 2: the attribute-locked decrement; busy after the retries: 503.
async fn decrease_inventory(
    State(state): State<AppState>,
    Path(product_id): Path<String>,
    Query(Quantity { quantity }): Query<Quantity>,
) -> ApiResult {
    if quantity <= 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "quantity must be positive",
        ));
    }
    match services::decrease_inventory(&state, &product_id, quantity).await {
        Ok(decrease) => Ok(Json(json!(decrease))),
        Err(ServiceError::Busy(_)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the system is busy, please retry",
        )),
        Err(error) => Err(error.into()),
    }
}

/// Scenario 3: a read-through cache. On a miss, one request per key loads the value
/// while the others wait for its lock, then find the value it stored.
async fn cached(State(state): State<AppState>, Path(key): Path<String>) -> ApiResult {
    let mut redis = state.redis.clone();
    let cache_key = format!("cache:{key}");
    if let Some(value) = redis.get::<_, Option<String>>(&cache_key).await? {
        return Ok(Json(
            json!({ "key": key, "value": value, "source": "cache" }),
        ));
    }
    let lock = state
        .locker
        .lock(format!("cache_refresh:{key}"))
        .ttl(Duration::from_secs(30))
        .wait(Duration::from_secs(10))
        .acquire()
        .await?;
    // Check again: the request that held the lock before us may have loaded it.
    if let Some(value) = redis.get::<_, Option<String>>(&cache_key).await? {
        return Ok(Json(
            json!({ "key": key, "value": value, "source": "cache" }),
        ));
    }
    tokio::time::sleep(state.work).await; // the slow data source
    let loads: u64 = redis.incr(format!("cache:{key}:loads"), 1).await?;
    let value = format!("{key} v{loads}, loaded by {}", state.instance);
    let ttl_ms = u64::try_from(state.cache_ttl.as_millis()).unwrap_or(u64::MAX);
    let () = redis.pset_ex(&cache_key, &value, ttl_ms).await?;
    lock.release().await?;
    Ok(Json(
        json!({ "key": key, "value": value, "source": "loaded" }),
    ))
}

/// Scenario 4: the attribute-locked daily report; already running elsewhere: 409.
async fn daily_report(State(state): State<AppState>, Path(date): Path<String>) -> ApiResult {
    let reports = ReportService { state: &state };
    Ok(Json(json!(reports.generate_daily_report(&date).await?)))
}

/// Scenario 4b: a user report in two phases; the lock is extended by 60 s between them
/// because the second phase needs more time than the first lock allowed.
async fn user_report(State(state): State<AppState>, Path(user_id): Path<String>) -> ApiResult {
    let lock = state
        .locker
        .lock(format!("user_report:{user_id}"))
        .ttl(Duration::from_secs(60))
        .retry(3, Duration::from_millis(100))
        .try_acquire()
        .await?;
    let Some(lock) = lock else {
        return Ok(Json(json!({
            "user_id": user_id,
            "status": "skipped",
            "message": "the report is being generated",
        })));
    };
    tokio::time::sleep(state.work).await; // phase 1: collect the user's data
    let before = lock.remaining();
    lock.extend(Duration::from_secs(60)).await?;
    let after = lock.remaining();
    tokio::time::sleep(state.work).await; // phase 2: analyse it
    lock.release().await?;
    Ok(Json(json!({
        "user_id": user_id,
        "status": "completed",
        "remaining_ms_before_extend": before.as_millis(),
        "remaining_ms_after_extend": after.as_millis(),
        "instance": &*state.instance,
    })))
}

/// Scenario 5: a scheduled task; another instance has it: skipped.
async fn run_task(State(state): State<AppState>, Path(task_id): Path<String>) -> ApiResult {
    Ok(Json(match services::run_task(&state, &task_id).await? {
        Some(run) => json!(run),
        None => json!({
            "task_id": task_id,
            "status": "skipped",
            "message": "another instance is running the task",
        }),
    }))
}

/// Scenario 6: rate limiting. The lock is not released but kept for its window, so
/// each user gets one call per window, across instances.
async fn rate_limited(State(state): State<AppState>, Path(user_id): Path<String>) -> ApiResult {
    let name = format!("rate_limit:{user_id}");
    let window = state.rate_window;
    match state.locker.lock(&name).ttl(window).try_acquire().await? {
        Some(lock) => {
            lock.keep();
            Ok(Json(json!({
                "user_id": user_id,
                "message": "request processed",
                "window_ms": window.as_millis(),
                "instance": &*state.instance,
            })))
        }
        None => {
            let retry_after = state.locker.remaining(&name).await?.unwrap_or(window);
            Err(ApiError {
                retry_after: Some(retry_after),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("too many requests: one call per {} ms", window.as_millis()),
                )
            })
        }
    }
}

/// Scenario 7: the attribute-locked batch; already running elsewhere: 409.
async fn process_batch(State(state): State<AppState>, Path(batch_id): Path<String>) -> ApiResult {
    Ok(Json(json!(
        services::process_batch(&state, &batch_id).await?
    )))
}

/// Whether a lock is held, by anyone, and for how much longer.
async fn lock_status(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let ttl = state.locker.remaining(&name).await?;
    Ok(Json(json!({
        "name": name,
        "locked": ttl.is_some(),
        "ttl_ms": ttl.map(|ttl| ttl.as_millis()),
    })))
}
