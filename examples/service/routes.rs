//! HTTP routes: the manual scenarios use the guard API here; the others call the
//! attribute-locked service layer.

use std::borrow::Cow;
use std::error::Error;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lock_runtime::LockError;
use redis::AsyncCommands;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::Instrument;

use crate::AppState;
use crate::services::{self, ReportService, ServiceError};

/// Every route of the service, each request in an `http.request` span.
pub(crate) fn router(state: AppState) -> Router {
    let admin = Router::new()
        .route("/locks/{*name}", get(lock_status))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), admin_only));
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
        .merge(admin)
        .layer(middleware::from_fn(request_span))
        .with_state(state)
}

/// Runs the request in a span, so that the locks' spans and events nest in it.
async fn request_span(request: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "http.request",
        method = %request.method(),
        path = %request.uri().path(),
    );
    next.run(request).instrument(span).await
}

/// Lets through only requests with the admin token, when one is set.
async fn admin_only(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(token) = &state.admin_token else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if given == Some(&**token) {
        next.run(request).await
    } else {
        ApiError::new(StatusCode::UNAUTHORIZED, "admin endpoint").into_response()
    }
}

/// An error response: a status and `{"detail": "..."}`, as FastAPI's `HTTPException`. The
/// detail is for the client: a few words, never Redis's error, a server address or an
/// internal key; what went wrong inside is logged.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    detail: Cow<'static, str>,
    retry_after: Option<Duration>,
}

impl ApiError {
    fn new(status: StatusCode, detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            detail: detail.into(),
            retry_after: None,
        }
    }

    fn retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }

    /// 503: Redis did not answer (or refused, or is loading); worth a retry in a moment.
    fn unavailable(error: &dyn Error) -> Self {
        tracing::warn!(error = %chain(error), "Redis unavailable; answering 503");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable")
            .retry_after(Some(Duration::from_secs(1)))
    }

    /// 500: a failure no scenario expects (a refused password, a wrong data type...).
    fn internal(error: &dyn Error) -> Self {
        tracing::error!(error = %chain(error), "request failed; answering 500");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

/// An error and its causes, for the log.
fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
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

/// Contention a route did not expect: 409; Redis down: 503; anything else: 500.
impl From<LockError> for ApiError {
    fn from(error: LockError) -> Self {
        if error.is_contention() {
            Self::new(StatusCode::CONFLICT, "busy, please retry").retry_after(error.retry_after())
        } else if error.is_unavailable() {
            Self::unavailable(&error)
        } else {
            Self::internal(&error)
        }
    }
}

/// The application's data store: down or unreachable is 503, anything else 500.
impl From<redis::RedisError> for ApiError {
    fn from(error: redis::RedisError) -> Self {
        let down = error.is_io_error()
            || error.is_timeout()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || matches!(error.code(), Some("LOADING" | "MASTERDOWN" | "TRYAGAIN"));
        if down {
            Self::unavailable(&error)
        } else {
            Self::internal(&error)
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Busy(what, error) => {
                Self::new(StatusCode::CONFLICT, what).retry_after(error.retry_after())
            }
            ServiceError::OutOfStock { .. } => {
                Self::new(StatusCode::BAD_REQUEST, error.to_string())
            }
            ServiceError::Lock(error) => error.into(),
            ServiceError::Redis(error) => error.into(),
        }
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

/// 200 when both Redis connections answer (the locks' and the data's).
async fn health(State(state): State<AppState>) -> ApiResult {
    state.locker.ping().await?;
    let () = redis::cmd("PING")
        .query_async::<String>(&mut state.redis.clone())
        .await
        .map(drop)?;
    Ok(Json(
        json!({ "instance": &*state.instance, "status": "ok" }),
    ))
}

/// The locks' metrics in Prometheus' text format.
async fn metrics(State(state): State<AppState>) -> Response {
    let content_type = HeaderValue::from_static("text/plain; version=0.0.4");
    (
        [(header::CONTENT_TYPE, content_type)],
        state.metrics.render(),
    )
        .into_response()
}

/// Scenario 1: process a payment once. A concurrent second click finds the lock taken
/// (409, without waiting); a later one finds the order paid (409).
async fn process_payment(State(state): State<AppState>, Path(order_id): Path<String>) -> ApiResult {
    let Some(lock) = state
        .locker
        .lock(format!("payment:{order_id}"))
        .label("payment:<order_id>")
        .ttl(Duration::from_secs(30))
        .try_acquire()
        .await?
    else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("order {order_id} is already being processed"),
        )
        .retry_after(Some(Duration::from_secs(1))));
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
        Err(ServiceError::Busy(_, error)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the system is busy, please retry",
        )
        .retry_after(error.retry_after())),
        Err(error) => Err(error.into()),
    }
}

/// Scenario 3: a read-through cache. On a miss, one request per key loads the value
/// while the others wait for its lock, then find the value it stored.
///
/// The value of key `K` is at `cache:value:K` and its load counter at `cache:loads:K`:
/// two prefixes, so no client key (`x:loads`, say) can name another key's counter.
async fn cached(State(state): State<AppState>, Path(key): Path<String>) -> ApiResult {
    let mut redis = state.redis.clone();
    let cache_key = format!("cache:value:{key}");
    if let Some(value) = redis.get::<_, Option<String>>(&cache_key).await? {
        return Ok(Json(
            json!({ "key": key, "value": value, "source": "cache" }),
        ));
    }
    let lock = state
        .locker
        .lock(format!("cache_refresh:{key}"))
        .label("cache_refresh:<key>")
        .ttl(Duration::from_secs(30))
        .wait(Duration::from_secs(10))
        .acquire()
        .await?;
    // Check again: the request that held the lock before us may have loaded it.
    if let Some(value) = redis.get::<_, Option<String>>(&cache_key).await? {
        lock.release().await?;
        return Ok(Json(
            json!({ "key": key, "value": value, "source": "cache" }),
        ));
    }
    tokio::time::sleep(state.work).await; // the slow data source
    let loads: u64 = redis.incr(format!("cache:loads:{key}"), 1).await?;
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
        .label("user_report:<user_id>")
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
/// each user gets one call per window, across instances; a refused call learns from the
/// contention error when the window closes (`Retry-After`).
async fn rate_limited(State(state): State<AppState>, Path(user_id): Path<String>) -> ApiResult {
    let window = state.rate_window;
    let request = state
        .locker
        .lock(format!("rate_limit:{user_id}"))
        .label("rate_limit:<user_id>");
    match request.ttl(window).acquire().await {
        Ok(lock) => {
            lock.keep();
            Ok(Json(json!({
                "user_id": user_id,
                "message": "request processed",
                "window_ms": window.as_millis(),
                "instance": &*state.instance,
            })))
        }
        Err(error) if error.is_contention() => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many requests: one call per {} ms", window.as_millis()),
        )
        .retry_after(Some(error.retry_after().unwrap_or(window)))),
        Err(error) => Err(error.into()),
    }
}

/// Scenario 7: the attribute-locked batch; already running elsewhere: 200 with the status
/// `already_processing`, as the original answered.
async fn process_batch(State(state): State<AppState>, Path(batch_id): Path<String>) -> ApiResult {
    Ok(Json(
        match services::process_batch(&state, &batch_id).await? {
            Some(batch) => json!(batch),
            None => json!({
                "batch_id": batch_id,
                "status": "already_processing",
                "message": "the batch is being processed",
            }),
        },
    ))
}

/// Admin: whether a lock is held, by anyone, and for how much longer.
async fn lock_status(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let ttl = state.locker.remaining(&name).await?;
    Ok(Json(json!({
        "name": name,
        "locked": ttl.is_some(),
        "ttl_ms": ttl.map(|ttl| ttl.as_millis()),
    })))
}
