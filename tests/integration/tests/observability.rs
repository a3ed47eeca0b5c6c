//! The spans and events of `lock-runtime/src/observability.md`, as a capturing subscriber
//! sees them against real servers: every row of its tables is emitted with its level,
//! target, parent and fields, and nothing under the crate's target is left out of them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use lock_runtime::testing::RedisServer;
use lock_runtime::{LockError, Locker};
use lock_tests_integration::{raw_connection, until_free};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Instrument, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

const TABLES: &str = include_str!("../../../lock-runtime/src/observability.md");
const TARGET: &str = "lock_runtime";

/// A row of the span and event tables.
#[derive(Debug)]
struct Row {
    kind: String,
    name: String,
    levels: BTreeSet<String>,
    parent: String,
    fields: BTreeSet<String>,
}

fn unquote(cell: &str) -> String {
    cell.trim().trim_matches('`').to_owned()
}

fn rows() -> Vec<Row> {
    let rows: Vec<Row> = TABLES
        .lines()
        .filter(|line| line.starts_with("| span |") || line.starts_with("| event |"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
            assert_eq!(
                cells.len(),
                6,
                "kind | name | level | parent | fields | when: {line}"
            );
            Row {
                kind: unquote(cells[0]),
                name: unquote(cells[1]),
                levels: cells[2].split(", ").map(unquote).collect(),
                parent: unquote(cells[3]),
                fields: cells[4]
                    .split(", ")
                    .map(unquote)
                    .filter(|field| !field.is_empty())
                    .collect(),
            }
        })
        .collect();
    assert!(
        rows.len() > 10,
        "the tables were not found in observability.md"
    );
    rows
}

/// A span or event as the subscriber saw it.
#[derive(Debug, Clone)]
struct Seen {
    kind: &'static str,
    name: &'static str,
    level: String,
    target: &'static str,
    /// Declared at the call site (recorded or not), without `message`.
    fields: BTreeSet<&'static str>,
    /// Recorded values (a span's include those recorded later).
    values: BTreeMap<&'static str, String>,
    parent: Option<&'static str>,
}

impl Seen {
    fn new(
        kind: &'static str,
        metadata: &'static Metadata<'static>,
        parent: Option<&'static str>,
    ) -> Self {
        Self {
            kind,
            name: metadata.name(),
            level: metadata.level().to_string(),
            target: metadata.target(),
            fields: metadata
                .fields()
                .iter()
                .map(|field| field.name())
                .filter(|name| *name != "message")
                .collect(),
            values: BTreeMap::new(),
            parent,
        }
    }
}

struct Values<'a>(&'a mut BTreeMap<&'static str, String>);

impl Visit for Values<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }
}

/// Where a span's record is in the capture.
struct Index(usize);

/// Captures every span (with its later records) and event.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Seen>>>);

impl Capture {
    fn seen(&self) -> Vec<Seen> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let span = ctx.span(id).expect("a new span is registered");
        let mut seen = Seen::new(
            "span",
            attrs.metadata(),
            span.parent().map(|parent| parent.name()),
        );
        attrs.record(&mut Values(&mut seen.values));
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        span.extensions_mut().insert(Index(all.len()));
        all.push(seen);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).expect("a recorded span is registered");
        let Some(&Index(index)) = span.extensions().get::<Index>() else {
            return;
        };
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        values.record(&mut Values(&mut all[index].values));
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let parent = ctx.event_span(event).map(|span| span.name());
        let mut seen = Seen::new("event", event.metadata(), parent);
        event.record(&mut Values(&mut seen.values));
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(seen);
    }
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Acquired, busy, waiting (queued, woken, timed out, cleaned up), cancelled, handed off,
/// invalid; inside a request span of the caller's.
async fn contention(server: &RedisServer) {
    let locker = Locker::redis(&server.url()).unwrap();
    let other = Locker::redis(&server.url()).unwrap();
    let holder = locker
        .lock("obs:contended")
        .label("obs:<name>")
        .acquire()
        .instrument(tracing::info_span!("request"))
        .await
        .unwrap();
    let busy = other.lock("obs:contended").acquire().await.unwrap_err();
    assert!(matches!(busy, LockError::Busy { .. }), "{busy:?}");
    let timeout = other
        .lock("obs:contended")
        .wait(ms(200))
        .acquire()
        .await
        .unwrap_err();
    assert!(
        matches!(timeout, LockError::WaitTimeout { .. }),
        "{timeout:?}"
    );
    let cancelled = tokio::time::timeout(
        ms(150),
        other.lock("obs:contended").wait(ms(5_000)).acquire(),
    )
    .await;
    assert!(cancelled.is_err(), "the holder still holds it");
    let waiter = tokio::spawn({
        let other = other.clone();
        async move { other.lock("obs:contended").wait(ms(5_000)).acquire().await }
    });
    tokio::time::sleep(ms(300)).await; // the waiter queues
    assert!(holder.release().await.unwrap());
    let handed = waiter.await.unwrap().expect("handed over by the release");
    assert!(handed.release().await.unwrap());
    let invalid = locker
        .lock("obs:invalid")
        .ttl(Duration::ZERO)
        .acquire()
        .await
        .unwrap_err();
    assert!(matches!(invalid, LockError::Config(_)), "{invalid:?}");
}

/// Every way a hold ends but an outage: released, min_hold, kept, dropped; renewed; lost
/// for each reason a healthy server can give.
async fn holds(server: &RedisServer) {
    let locker = Locker::redis(&server.url()).unwrap();
    let mut redis = raw_connection(&server.url()).await;
    let lock = locker.lock("obs:released").acquire().await.unwrap();
    let again = locker.lock("obs:released").acquire().await.unwrap_err();
    assert!(matches!(again, LockError::Reentrant { .. }), "{again}");
    let shared = locker
        .lock("obs:released")
        .reentrant()
        .acquire()
        .await
        .unwrap();
    assert!(shared.release().await.unwrap());
    assert!(lock.release().await.unwrap());
    let lock = locker.lock("obs:min_hold").acquire().await.unwrap();
    assert!(lock.release_after(ms(5_000)).await.unwrap());
    locker
        .lock("obs:kept")
        .ttl(ms(100))
        .acquire()
        .await
        .unwrap()
        .keep();
    drop(locker.lock("obs:dropped").acquire().await.unwrap());
    assert!(until_free(&locker, "obs:dropped").await);

    let renewed = locker
        .lock("obs:renewed")
        .ttl(ms(300))
        .renew_every(ms(100))
        .acquire()
        .await
        .unwrap();
    tokio::time::sleep(ms(350)).await;
    assert!(renewed.release().await.unwrap(), "renewed past its TTL");

    let refused = locker
        .lock("obs:renewal_refused")
        .ttl(ms(300))
        .renew_every(ms(100))
        .acquire()
        .await
        .unwrap();
    let () = redis::cmd("DEL")
        .arg(refused.key())
        .query_async(&mut redis)
        .await
        .unwrap();
    tokio::time::timeout(ms(5_000), refused.lost())
        .await
        .expect("the next renewal finds the key gone");

    let extended = locker.lock("obs:extend_refused").acquire().await.unwrap();
    let () = redis::cmd("DEL")
        .arg(extended.key())
        .query_async(&mut redis)
        .await
        .unwrap();
    let lost = extended.extend(ms(1_000)).await.unwrap_err();
    assert!(matches!(lost, LockError::Lost { .. }), "{lost:?}");

    let expired = locker.lock("obs:gone").ttl(ms(50)).acquire().await.unwrap();
    tokio::time::sleep(ms(150)).await;
    assert!(
        !expired.release().await.unwrap(),
        "expired before the release"
    );
}

/// A paused server: renewals fail until the lease runs out, releases fail (a dropped
/// guard's, `run`'s), a waiter fails and cannot leave the queue.
async fn outage(server: &RedisServer) {
    let locker = Locker::builder()
        .command_timeout(ms(100))
        .connect_timeout(ms(100))
        .poll_interval(ms(50))
        .redis(&server.url())
        .unwrap();
    let renewing = locker
        .lock("obs:outage")
        .ttl(ms(600))
        .renew_every(ms(200))
        .acquire()
        .await
        .unwrap();
    let dropped = locker
        .lock("obs:dropped_in_outage")
        .acquire()
        .await
        .unwrap();
    let waiter = tokio::spawn({
        let locker = locker.clone();
        async move { locker.lock("obs:outage").wait(ms(5_000)).acquire().await }
    });
    tokio::time::sleep(ms(100)).await; // the waiter queues
    server.pause().unwrap();
    drop(dropped);
    tokio::time::timeout(ms(5_000), renewing.lost())
        .await
        .expect("the lease runs out while renewals fail");
    let failed = waiter.await.unwrap().unwrap_err();
    assert!(failed.is_unavailable(), "{failed:?}");
    tokio::time::sleep(ms(300)).await; // the spawned release and clean-up fail
    server.resume().unwrap();

    let ran = locker
        .lock("obs:run")
        .run(|_| async { server.pause().unwrap() })
        .await;
    assert!(ran.is_ok(), "the work's output is returned: {ran:?}");
    server.resume().unwrap();
}

/// A waiter whose ACL user may not subscribe polls; Redlock without a quorum retries.
async fn degraded(server: &RedisServer) {
    let holder = Locker::redis(&server.url()).unwrap();
    let _held = holder.lock("obs:acl").acquire().await.unwrap();
    let url = server
        .create_user("nosub", "pw", &["~lock:*", "&other:*", "+@all"])
        .unwrap();
    let restricted = Locker::builder().poll_interval(ms(50)).redis(&url).unwrap();
    let polled = restricted
        .lock("obs:acl")
        .wait(ms(200))
        .acquire()
        .await
        .unwrap_err();
    assert!(
        matches!(polled, LockError::WaitTimeout { .. }),
        "{polled:?}"
    );

    let mut servers = [(); 3].map(|()| RedisServer::start().unwrap());
    let locker = Locker::builder()
        .poll_interval(ms(50))
        .redlock(servers.iter().map(RedisServer::url))
        .unwrap();
    // A waiter on a Redlock lock hears a message on its channel that is no free.
    let holder = locker.lock("obs:noise").acquire().await.unwrap();
    let waiter = tokio::spawn({
        let locker = locker.clone();
        async move { locker.lock("obs:noise").wait(ms(400)).acquire().await }
    });
    tokio::time::sleep(ms(150)).await;
    for server in &servers {
        let mut redis = raw_connection(&server.url()).await;
        let _: i64 = redis::cmd("PUBLISH")
            .arg("lock:{obs:noise}:released")
            .arg("not a hand-off")
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    assert!(holder.release().await.unwrap());
    assert!(waiter.await.unwrap().unwrap().release().await.unwrap());
    servers[2].stop();
    locker.ping().await.unwrap(); // a majority answers; one server is unreachable
    servers[1].stop();
    let error = locker
        .lock("obs:quorum")
        .wait(ms(200))
        .acquire()
        .await
        .unwrap_err();
    assert!(matches!(error, LockError::Quorum { .. }), "{error:?}");
}

/// A `skip` function that returns no `Result` cannot return a failure: it logs it.
#[lock_runtime::distributed_lock("obs:job", skip, locker = locker)]
async fn nightly(locker: &Locker) {}

/// Events of failure paths this test does not provoke (a channel that cannot be
/// unsubscribed or subscribed again: a server failing at that very moment).
/// (And an election won while the server stopped answering between the win and its
/// announcement.)
const NOT_PROVOKED: [&str; 3] = [
    "lock.unsubscribe_failed",
    "lock.resubscribe_failed",
    "lock.announce_failed",
];

#[test]
fn every_span_and_event_is_emitted_as_the_table_says() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let _default = tracing::subscriber::set_default(subscriber);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = RedisServer::start().unwrap();
    runtime.block_on(async {
        contention(&server).await;
        holds(&server).await;
        outage(&server).await;
        degraded(&server).await;
        let unreachable = Locker::builder()
            .connect_timeout(ms(200))
            .redis("redis://127.0.0.1:1")
            .unwrap();
        nightly(&unreachable).await;
        let campaign = unreachable.leader("obs:leader").wait(ms(300)).await;
        assert!(campaign.unwrap_err().is_unavailable());
        tokio::time::sleep(ms(200)).await; // background releases and clean-ups finish
    });
    // A guard dropped where no runtime can release it.
    let outside = runtime
        .block_on(Locker::memory().lock("obs:outside").acquire())
        .unwrap();
    drop(outside);
    drop(runtime);

    let seen: Vec<Seen> = capture
        .seen()
        .into_iter()
        .filter(|seen| seen.target == TARGET || seen.name.starts_with("lock."))
        .collect();
    let rows = rows();
    for seen in &seen {
        assert_eq!(seen.target, TARGET, "{seen:?}");
        let row = rows
            .iter()
            .find(|row| row.kind == seen.kind && row.name == seen.name)
            .unwrap_or_else(|| panic!("not in observability.md's tables: {seen:?}"));
        assert!(
            row.levels.contains(&seen.level),
            "level of {seen:?}, documented {row:?}"
        );
        match row.parent.as_str() {
            "the current span" => {}
            "none" => assert_eq!(seen.parent, None, "{seen:?}"),
            parent => assert_eq!(seen.parent, Some(parent), "{seen:?}"),
        }
        for field in &seen.fields {
            assert!(
                row.fields.contains(*field),
                "`{field}` undocumented: {seen:?}, {row:?}"
            );
        }
        for (field, value) in &seen.values {
            assert!(
                !value.contains("lock:{"),
                "the internal key in `{field}`: {seen:?}"
            );
        }
    }
    for row in rows
        .iter()
        .filter(|row| !NOT_PROVOKED.contains(&row.name.as_str()))
    {
        let emitted: Vec<&Seen> = seen
            .iter()
            .filter(|seen| seen.kind == row.kind && seen.name == row.name)
            .collect();
        assert!(!emitted.is_empty(), "never emitted: {row:?}");
        let levels: BTreeSet<String> = emitted.iter().map(|seen| seen.level.clone()).collect();
        assert_eq!(levels, row.levels, "levels of {}", row.name);
        let fields: BTreeSet<String> = emitted
            .iter()
            .flat_map(|seen| seen.fields.iter().map(|field| field.to_string()))
            .collect();
        assert_eq!(fields, row.fields, "fields of {}", row.name);
    }

    let values = |kind: &str, name: &str, field: &str| -> BTreeSet<String> {
        seen.iter()
            .filter(|seen| seen.kind == kind && seen.name == name)
            .filter_map(|seen| seen.values.get(field).cloned())
            .collect()
    };
    let set = |values: &[&str]| values.iter().map(|value| value.to_string()).collect();
    assert_eq!(
        values("span", "lock.acquire", "lock.outcome"),
        set(&["acquired", "busy", "timeout", "cancelled", "error"])
    );
    assert_eq!(
        values("span", "lock.hold", "lock.release"),
        set(&["released", "min_hold", "kept", "dropped", "abandoned"])
    );
    let reasons = set(&[
        "renewal_refused",
        "extend_refused",
        "lease_expired",
        "gone_at_release",
    ]);
    assert_eq!(values("event", "lock.lost", "lock.reason"), reasons);
    assert_eq!(
        values("span", "lock.hold", "lock.lost"),
        set(&["false", "true"])
    );
    assert!(values("event", "lock.woken", "lock.by").contains("timer"));
    assert!(!values("event", "lock.handed_off", "lock.handoff_ms").is_empty());
    assert_eq!(
        values("event", "lock.cleanup", "lock.passed_on"),
        set(&["false"])
    );

    // Spans start under the caller's span and name the lock and its label.
    let labelled: Vec<&Seen> = seen
        .iter()
        .filter(|seen| {
            seen.kind == "span"
                && seen.values.get("lock.label").map(String::as_str) == Some("obs:<name>")
        })
        .collect();
    assert_eq!(
        labelled.len(),
        2,
        "the labelled acquisition and its hold: {labelled:?}"
    );
    for span in labelled {
        assert_eq!(span.parent, Some("request"), "{span:?}");
        assert_eq!(span.values["lock.name"], "obs:contended");
    }
    let unlabelled = values("span", "lock.acquire", "lock.label");
    assert!(unlabelled.contains("unlabelled"), "{unlabelled:?}");
    // A hold records its renewals and its end.
    let renewed = seen
        .iter()
        .find(|seen| seen.name == "lock.hold" && seen.values["lock.name"] == "obs:renewed")
        .unwrap();
    assert_ne!(renewed.values["lock.renewals"], "0", "{renewed:?}");
    assert_eq!(renewed.values["lock.release"], "released");
    assert!(renewed.values.contains_key("lock.held_ms"), "{renewed:?}");
}
