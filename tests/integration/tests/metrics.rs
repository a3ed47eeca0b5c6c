//! The metrics of `lock-runtime/src/observability.md` (feature `metrics`), as a recording
//! recorder sees them against a real server: the names, kinds, units and labels of its
//! table, one sample per acquisition and hold, and gauges back at 0 when nothing is held
//! or waited for. One test: the recorder is the process's global one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use std::time::Duration;

use lock_runtime::testing::RedisServer;
use lock_runtime::{LockError, Locker};
use lock_tests_integration::{eventually, raw_connection};
use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

const TABLE: &str = include_str!("../../../lock-runtime/src/observability.md");

/// A row of the metrics table.
#[derive(Debug)]
struct Row {
    name: String,
    kind: MetricKind,
    unit: Option<metrics::Unit>,
    labels: BTreeSet<String>,
}

fn rows() -> Vec<Row> {
    let rows: Vec<Row> = TABLE
        .lines()
        .filter(|line| line.starts_with("| `lock."))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(
                cells.len(),
                5,
                "metric | kind | unit | labels | what: {line}"
            );
            Row {
                name: cells[0].trim_matches('`').to_owned(),
                kind: match cells[1] {
                    "counter" => MetricKind::Counter,
                    "gauge" => MetricKind::Gauge,
                    "histogram" => MetricKind::Histogram,
                    other => panic!("unknown kind {other}"),
                },
                unit: match cells[2] {
                    "" => None,
                    "seconds" => Some(metrics::Unit::Seconds),
                    other => panic!("unknown unit {other}"),
                },
                labels: cells[3]
                    .split(", ")
                    .map(|label| label.trim_matches('`').to_owned())
                    .collect(),
            }
        })
        .collect();
    assert_eq!(rows.len(), 8, "the metrics table of observability.md");
    rows
}

/// A metric and its labels, sorted.
type Series = (MetricKind, String, BTreeMap<String, String>);

/// Totals since the start: the recorder's snapshots reset counters and gauges and drain
/// histograms, so each snapshot is added to what came before.
#[derive(Default)]
struct Totals {
    counters: BTreeMap<Series, u64>,
    gauges: BTreeMap<Series, f64>,
    histograms: BTreeMap<Series, Vec<f64>>,
    units: BTreeMap<(MetricKind, String), Option<metrics::Unit>>,
}

impl Totals {
    fn update(&mut self, snapshotter: &Snapshotter) {
        for (key, unit, _, value) in snapshotter.snapshot().into_vec() {
            let (kind, key) = key.into_parts();
            let (name, labels) = key.into_parts();
            let labels = labels
                .into_iter()
                .map(|label| {
                    let (key, value) = label.into_parts();
                    (key.to_string(), value.to_string())
                })
                .collect();
            let name = name.as_str().to_owned();
            self.units.insert((kind, name.clone()), unit);
            let series = (kind, name, labels);
            match value {
                DebugValue::Counter(value) => *self.counters.entry(series).or_default() += value,
                DebugValue::Gauge(value) => *self.gauges.entry(series).or_default() += value.0,
                DebugValue::Histogram(values) => self
                    .histograms
                    .entry(series)
                    .or_default()
                    .extend(values.into_iter().map(|value| value.0)),
            }
        }
    }

    fn series(kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> Series {
        let labels = labels
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        (kind, name.to_owned(), labels)
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let series = Self::series(MetricKind::Counter, name, labels);
        self.counters.get(&series).copied().unwrap_or(0)
    }

    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let series = Self::series(MetricKind::Gauge, name, labels);
        self.gauges.get(&series).copied().unwrap_or(0.0)
    }

    fn samples(&self, name: &str, labels: &[(&str, &str)]) -> &[f64] {
        let series = Self::series(MetricKind::Histogram, name, labels);
        self.histograms.get(&series).map_or(&[], Vec::as_slice)
    }
}

fn recorder() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder of this test binary");
        snapshotter
    })
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_the_table_and_gauges_return_to_zero() {
    let snapshotter = recorder();
    let mut totals = Totals::default();
    let server = RedisServer::start().unwrap();
    let locker = Locker::builder()
        .poll_interval(ms(100))
        .redis(&server.url())
        .unwrap();

    // 1,000 sections: 1,000 acquisitions, each one sample of its wait and of its hold.
    const SECTIONS: usize = 1_000;
    for section in 0..SECTIONS {
        let name = format!("section:{}", section % 7);
        let guard = locker
            .lock(name)
            .label("section:<n>")
            .acquire()
            .await
            .unwrap();
        assert!(guard.release().await.unwrap());
    }
    totals.update(snapshotter);
    let section = [("lock", "section:<n>")];
    let acquired = [("lock", "section:<n>"), ("outcome", "acquired")];
    assert_eq!(totals.counter("lock.acquisitions", &acquired), 1_000);
    assert_eq!(
        totals.samples("lock.acquire.duration", &acquired).len(),
        SECTIONS
    );
    assert_eq!(
        totals.samples("lock.hold.duration", &section).len(),
        SECTIONS
    );
    assert_eq!(totals.gauge("lock.held", &section), 0.0);
    assert_eq!(totals.gauge("lock.waiters", &section), 0.0);
    let waits = totals.samples("lock.acquire.duration", &acquired);
    assert!(
        waits.iter().all(|wait| (0.0..5.0).contains(wait)),
        "seconds, not milliseconds"
    );

    // Contention: waiters are counted while they wait, and get the lock by hand-off.
    const WAITERS: usize = 4;
    let contended = [("lock", "contended")];
    let holder = locker
        .lock("hot")
        .label("contended")
        .acquire()
        .await
        .unwrap();
    let other = Locker::redis(&server.url()).unwrap();
    let waiters: Vec<_> = (0..WAITERS)
        .map(|_| {
            let other = other.clone();
            tokio::spawn(async move {
                let guard = other
                    .lock("hot")
                    .label("contended")
                    .wait(ms(10_000))
                    .acquire()
                    .await?;
                tokio::time::sleep(ms(10)).await;
                guard.release().await
            })
        })
        .collect();
    let all_waiting = eventually(ms(10_000), || {
        totals.update(snapshotter);
        let waiting = totals.gauge("lock.waiters", &contended);
        async move { waiting == 4.0 }
    })
    .await;
    assert!(
        all_waiting,
        "{} waiters counted",
        totals.gauge("lock.waiters", &contended)
    );
    assert_eq!(totals.gauge("lock.held", &contended), 1.0);
    assert_eq!(
        totals.counter(
            "lock.acquisitions",
            &[("lock", "contended"), ("outcome", "acquired")]
        ),
        1
    );
    assert!(holder.release().await.unwrap());
    for waiter in waiters {
        assert!(waiter.await.unwrap().unwrap(), "held until its release");
    }
    totals.update(snapshotter);
    assert_eq!(totals.gauge("lock.waiters", &contended), 0.0);
    assert_eq!(totals.gauge("lock.held", &contended), 0.0);
    assert_eq!(
        totals.counter(
            "lock.acquisitions",
            &[("lock", "contended"), ("outcome", "acquired")]
        ),
        5
    );
    let handoffs = totals.samples("lock.handoff.duration", &contended);
    assert!((1..=WAITERS).contains(&handoffs.len()), "{handoffs:?}");
    assert!(
        handoffs.iter().all(|latency| (0.0..5.0).contains(latency)),
        "{handoffs:?}"
    );

    // Every other outcome; without a label, the fixed one.
    let outcomes = [("lock", "outcomes")];
    let held = locker
        .lock("held")
        .label("outcomes")
        .acquire()
        .await
        .unwrap();
    let busy = other
        .lock("held")
        .label("outcomes")
        .acquire()
        .await
        .unwrap_err();
    assert!(matches!(busy, LockError::Busy { .. }));
    let timeout = other
        .lock("held")
        .label("outcomes")
        .wait(ms(150))
        .acquire()
        .await
        .unwrap_err();
    assert!(matches!(timeout, LockError::WaitTimeout { .. }));
    let waiting = other
        .lock("held")
        .label("outcomes")
        .wait(ms(10_000))
        .acquire();
    assert!(tokio::time::timeout(ms(150), waiting).await.is_err());
    let invalid = other
        .lock("held")
        .label("outcomes")
        .ttl(Duration::ZERO)
        .acquire()
        .await;
    assert!(matches!(invalid, Err(LockError::Config(_))));
    assert!(held.release().await.unwrap());
    let plain = locker.lock("plain").acquire().await.unwrap();
    assert!(plain.release().await.unwrap());
    totals.update(snapshotter);
    for outcome in ["acquired", "busy", "timeout", "cancelled", "error"] {
        let labels = [("lock", "outcomes"), ("outcome", outcome)];
        assert_eq!(totals.counter("lock.acquisitions", &labels), 1, "{outcome}");
        assert_eq!(
            totals.samples("lock.acquire.duration", &labels).len(),
            1,
            "{outcome}"
        );
    }
    assert_eq!(
        totals.gauge("lock.waiters", &outcomes),
        0.0,
        "the cancelled waiter left"
    );
    let unlabelled = [("lock", "unlabelled"), ("outcome", "acquired")];
    assert_eq!(totals.counter("lock.acquisitions", &unlabelled), 1);

    // Renewals, and a loss by reason.
    let renewing = [("lock", "renewing")];
    let renewed = locker
        .lock("renewed")
        .label("renewing")
        .ttl(ms(300))
        .renew_every(ms(100))
        .acquire()
        .await
        .unwrap();
    tokio::time::sleep(ms(350)).await;
    let mut redis = raw_connection(&server.url()).await;
    let () = redis::cmd("DEL")
        .arg(renewed.key())
        .query_async(&mut redis)
        .await
        .unwrap();
    tokio::time::timeout(ms(5_000), renewed.lost())
        .await
        .expect("lost");
    assert!(!renewed.release().await.unwrap());
    totals.update(snapshotter);
    let renewals = |outcome| {
        totals.counter(
            "lock.renewals",
            &[("lock", "renewing"), ("outcome", outcome)],
        )
    };
    assert!(renewals("renewed") >= 2, "{}", renewals("renewed"));
    assert_eq!(renewals("refused"), 1);
    assert_eq!(renewals("failed"), 0);
    let lost = [("lock", "renewing"), ("reason", "renewal_refused")];
    assert_eq!(totals.counter("lock.losses", &lost), 1);
    assert_eq!(totals.samples("lock.hold.duration", &renewing).len(), 1);
    assert_eq!(totals.gauge("lock.held", &renewing), 0.0);

    // The names, kinds, units and label keys are the table's, and every row was seen.
    let rows = rows();
    let mut seen = BTreeSet::new();
    let all = (totals.counters.keys())
        .chain(totals.gauges.keys())
        .chain(totals.histograms.keys());
    for (kind, name, labels) in all {
        let row = rows
            .iter()
            .find(|row| row.name == *name)
            .unwrap_or_else(|| panic!("`{name}` is not in observability.md"));
        assert_eq!(row.kind, *kind, "{name}");
        assert_eq!(totals.units[&(*kind, name.clone())], row.unit, "{name}");
        let keys: BTreeSet<String> = labels.keys().cloned().collect();
        assert_eq!(keys, row.labels, "{name}");
        assert!(
            !labels
                .values()
                .any(|value| value.contains("hot") || value.contains("section:0")),
            "a lock name as a label: {labels:?}"
        );
        seen.insert(name.clone());
    }
    assert_eq!(seen.len(), rows.len(), "seen: {seen:?}");
    // Nothing is held or waited for any more, under any label.
    for ((_, name, labels), value) in &totals.gauges {
        assert_eq!(*value, 0.0, "{name} {labels:?}");
    }
}
