//! What the crate tells operators: the target, the vocabulary and the metrics of its
//! spans and events (`observability.md` is their table). The spans and events themselves
//! are emitted where the state they describe lives (`wait`, `lease`, `renew`, `request`).
//!
//! # Behavior
//!
//! - Every span and event has the target [`TARGET`] (the crate's root, a public path), so
//!   `RUST_LOG=lock_runtime=debug` selects them all.
//! - Metrics (feature `metrics`) go through instruments registered once per label and per
//!   recorder and then kept ([`Meter`]): recording is an atomic operation, with no
//!   allocation and no registry look-up per lock operation. The handles are registered
//!   again when another recorder becomes current (one installed later, or a test's
//!   thread-local one). Without the feature, [`Meter`] is a stand-in that does nothing.
//! - Labels are a request's [`label`](crate::LockRequest::label), or [`DEFAULT_LABEL`]:
//!   never the lock's name, whose values are unbounded.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tracing::Span;

/// The target of every span and event of the crate.
pub(crate) const TARGET: &str = "lock_runtime";

/// The metrics label of a request that sets none.
pub(crate) const DEFAULT_LABEL: &str = "unlabelled";

/// A metrics label: a template such as `order:<id>`, or a name the user chose.
pub(crate) type Label = Cow<'static, str>;

/// A duration as milliseconds to the microsecond, the unit of every `*_ms` field
/// (rounded, so that it prints as `1.428`, not `1.4278579999999998`).
pub(crate) fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

/// Records the fields `values` (name, value) of `span` in one call to its subscriber: one
/// look-up of the span and one write of its fields, where a `record` per field costs one
/// each. Nothing when nobody listens (a disabled span has no metadata); a name the span
/// does not have is skipped, and so is a value that is `None`.
pub(crate) fn record<const N: usize>(span: &Span, values: [(&str, &dyn tracing::Value); N]) {
    let Some(metadata) = span.metadata() else {
        return;
    };
    let fields = metadata.fields();
    let found = values.map(|(name, _)| fields.field(name));
    let Some(any) = found.iter().flatten().next() else {
        return;
    };
    let entries: [(&tracing::field::Field, Option<&dyn tracing::Value>); N] =
        std::array::from_fn(|index| match &found[index] {
            Some(field) => (field, Some(values[index].1)),
            None => (any, None),
        });
    span.record_all(&fields.value_set(&entries));
}

/// How an acquisition ended (`outcome` label, `lock.outcome` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Acquired,
    /// Held by another owner, and the request was not to wait.
    Busy,
    /// Still held when the wait or the retries ran out.
    Timeout,
    /// The acquiring future was dropped.
    Cancelled,
    /// Any error but contention (invalid request, Redis down, no quorum...).
    Error,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Acquired => "acquired",
            Self::Busy => "busy",
            Self::Timeout => "timeout",
            Self::Cancelled => "cancelled",
            Self::Error => "error",
        }
    }

    /// The outcome an acquisition's error stands for.
    pub(crate) fn of_error(error: &crate::LockError) -> Self {
        match error {
            crate::LockError::Busy { .. } => Self::Busy,
            crate::LockError::WaitTimeout { .. } => Self::Timeout,
            _ => Self::Error,
        }
    }
}

/// What one renewal's answer was (`outcome` label of `lock.renewals`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Renewal {
    /// Extended.
    Renewed,
    /// No answer, or an error: retried while the lease lasts.
    Failed,
    /// The key was gone or had another owner: the lock is lost.
    Refused,
}

/// Why a held lock was lost (`reason` label, `lock.reason` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lost {
    /// A renewal found the key expired or owned by someone else.
    RenewalRefused,
    /// An `extend` found the key expired or owned by someone else.
    ExtendRefused,
    /// The lease ran out while renewals failed.
    LeaseExpired,
    /// The release found the key expired or owned by someone else.
    GoneAtRelease,
}

impl Lost {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::RenewalRefused => "renewal_refused",
            Self::ExtendRefused => "extend_refused",
            Self::LeaseExpired => "lease_expired",
            Self::GoneAtRelease => "gone_at_release",
        }
    }
}

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RenewalRefused => "a renewal found the key expired or owned by someone else",
            Self::ExtendRefused => "an extend found the key expired or owned by someone else",
            Self::LeaseExpired => "the lease ran out while renewals failed",
            Self::GoneAtRelease => "at release the key had expired or had another owner",
        })
    }
}

/// How a hold ended without being lost (`lock.release` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    /// `release()`: the key was deleted or handed to the next waiter.
    Released,
    /// `release_after(min_hold)`: the key was kept until `min_hold`, then expires.
    MinHold,
    /// `keep()`: the key was left to expire with its TTL.
    Kept,
    /// The guard was dropped and released the lock in the background.
    Dropped,
    /// The release never completed (Redis failed, or its runtime ended): the key expires
    /// with its TTL.
    Abandoned,
}

impl Release {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Released => "released",
            Self::MinHold => "min_hold",
            Self::Kept => "kept",
            Self::Dropped => "dropped",
            Self::Abandoned => "abandoned",
        }
    }
}

/// One acquisition, from the request to its outcome: the `lock.acquire` span, the
/// waiter count and the outcome's metrics. Dropped before [`finish`](Self::finish), it
/// records the outcome `cancelled`.
#[derive(Debug)]
pub(crate) struct Acquisition {
    span: Span,
    meter: Meter,
    started: Instant,
    /// Counted in `lock.waiters`.
    waiting: AtomicBool,
    finished: bool,
}

impl Acquisition {
    /// Starts observing the acquisition of `name` under `label` with the wait policy
    /// `policy`.
    pub(crate) fn start(name: &str, label: &Label, policy: &dyn fmt::Display) -> Self {
        let span = tracing::info_span!(
            target: TARGET,
            "lock.acquire",
            lock.name = name,
            lock.label = &**label,
            lock.wait = %policy,
            lock.outcome = tracing::field::Empty,
            lock.waited_ms = tracing::field::Empty,
        );
        Self {
            span,
            meter: Meter::of(label),
            started: Instant::now(),
            waiting: AtomicBool::new(false),
            finished: false,
        }
    }

    /// The `lock.acquire` span.
    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// The request waits for another owner from now on (counted once in `lock.waiters`).
    pub(crate) fn waiting(&self) {
        if !self.waiting.swap(true, Ordering::Relaxed) {
            self.meter.waiters(1.0);
        }
    }

    /// A hand-off reached this waiter `latency` after the release that made it.
    pub(crate) fn handed_off(&self, latency: Duration) {
        self.meter.handoff(latency);
    }

    /// Records the outcome; returns the instruments for the hold, and the time waited.
    pub(crate) fn finish(mut self, outcome: Outcome) -> (Meter, Duration) {
        let waited = self.end(outcome);
        (self.meter.clone(), waited)
    }

    fn end(&mut self, outcome: Outcome) -> Duration {
        self.finished = true;
        let waited = self.started.elapsed();
        record(
            &self.span,
            [
                ("lock.outcome", &outcome.as_str()),
                ("lock.waited_ms", &ms(waited)),
            ],
        );
        if self.waiting.swap(false, Ordering::Relaxed) {
            self.meter.waiters(-1.0);
        }
        self.meter.acquisition(outcome, waited);
        waited
    }
}

impl Drop for Acquisition {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let waited = self.end(Outcome::Cancelled);
        tracing::debug!(
            name: "lock.cancelled",
            target: TARGET,
            parent: &self.span,
            {
                lock.waited_ms = ms(waited),
            },
            "lock acquisition cancelled",
        );
    }
}

#[cfg(feature = "metrics")]
pub(crate) use self::metrics_on::Meter;

#[cfg(not(feature = "metrics"))]
pub(crate) use self::metrics_off::Meter;

/// Without the `metrics` feature: nothing to record.
#[cfg(not(feature = "metrics"))]
mod metrics_off {
    use std::time::Duration;

    use super::{Label, Lost, Outcome, Renewal};

    /// Stands in for the instruments of a label.
    #[derive(Debug, Clone)]
    pub(crate) struct Meter;

    impl Meter {
        pub(crate) fn of(_label: &Label) -> Self {
            Self
        }
        pub(crate) fn acquisition(&self, _outcome: Outcome, _waited: Duration) {}
        pub(crate) fn waiters(&self, _by: f64) {}
        pub(crate) fn handoff(&self, _latency: Duration) {}
        pub(crate) fn held(&self, _by: f64) {}
        pub(crate) fn renewal(&self, _renewal: Renewal) {}
        pub(crate) fn hold_ended(&self, _held: Duration, _lost: Option<Lost>) {}
    }
}

/// The `metrics` feature: instruments per label, registered once per recorder.
#[cfg(feature = "metrics")]
mod metrics_on {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, LazyLock, PoisonError, RwLock};
    use std::time::Duration;

    use metrics::{Counter, Gauge, Histogram, Key, KeyName, Recorder, Unit};

    use super::{Label, Lost, Outcome, Renewal, TARGET};

    /// Every metric: name, kind, unit, description (the table in `observability.md`).
    const ACQUISITIONS: &str = "lock.acquisitions";
    const ACQUIRE_DURATION: &str = "lock.acquire.duration";
    const WAITERS: &str = "lock.waiters";
    const HANDOFF_DURATION: &str = "lock.handoff.duration";
    const HELD: &str = "lock.held";
    const HOLD_DURATION: &str = "lock.hold.duration";
    const RENEWALS: &str = "lock.renewals";
    const LOSSES: &str = "lock.losses";

    /// Every [`Outcome`], [`Lost`] reason, in the order of their variants (their index).
    const OUTCOMES: [Outcome; 5] = [
        Outcome::Acquired,
        Outcome::Busy,
        Outcome::Timeout,
        Outcome::Cancelled,
        Outcome::Error,
    ];
    /// The `outcome` label of each [`Renewal`], in the order of its variants.
    const RENEWAL_OUTCOMES: [&str; 3] = ["renewed", "failed", "refused"];
    const LOST_REASONS: [Lost; 4] = [
        Lost::RenewalRefused,
        Lost::ExtendRefused,
        Lost::LeaseExpired,
        Lost::GoneAtRelease,
    ];

    static METADATA: metrics::Metadata<'static> =
        metrics::Metadata::new(TARGET, metrics::Level::INFO, Some(TARGET));

    /// The instruments of one label, as registered with one recorder.
    #[derive(Debug)]
    struct Instruments {
        /// The address of the recorder they belong to.
        recorder: usize,
        acquisitions: [Counter; OUTCOMES.len()],
        acquire_duration: [Histogram; OUTCOMES.len()],
        waiters: Gauge,
        handoff_duration: Histogram,
        held: Gauge,
        hold_duration: Histogram,
        renewals: [Counter; RENEWAL_OUTCOMES.len()],
        losses: [Counter; LOST_REASONS.len()],
    }

    /// The instruments of a label, cheap to clone.
    #[derive(Debug, Clone)]
    pub(crate) struct Meter(Arc<Instruments>);

    static METERS: LazyLock<RwLock<HashMap<Label, Meter>>> = LazyLock::new(RwLock::default);

    /// The recorder the metrics were last described to.
    static DESCRIBED: AtomicUsize = AtomicUsize::new(0);

    fn address(recorder: &dyn Recorder) -> usize {
        std::ptr::from_ref(recorder).cast::<()>().addr()
    }

    impl Meter {
        /// The instruments of `label` on the current recorder.
        pub(crate) fn of(label: &Label) -> Self {
            let current = metrics::with_recorder(address);
            let found = METERS
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(label)
                .filter(|meter| meter.0.recorder == current)
                .cloned();
            found.unwrap_or_else(|| {
                let meter = metrics::with_recorder(|recorder| Self::register(recorder, label));
                METERS
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(label.clone(), meter.clone());
                meter
            })
        }

        fn register(recorder: &dyn Recorder, label: &Label) -> Self {
            let address = address(recorder);
            if DESCRIBED.swap(address, Ordering::Relaxed) != address {
                describe(recorder);
            }
            let key = |name: &'static str, extra: Option<(&'static str, &'static str)>| {
                let mut labels = vec![metrics::Label::new("lock", label.clone())];
                labels.extend(
                    extra.map(|(key, value)| metrics::Label::from_static_parts(key, value)),
                );
                Key::from_parts(name, labels)
            };
            let counter = |name, extra| recorder.register_counter(&key(name, extra), &METADATA);
            let gauge = |name| recorder.register_gauge(&key(name, None), &METADATA);
            let histogram = |name, extra| recorder.register_histogram(&key(name, extra), &METADATA);
            Self(Arc::new(Instruments {
                recorder: address,
                acquisitions: OUTCOMES
                    .map(|outcome| counter(ACQUISITIONS, Some(("outcome", outcome.as_str())))),
                acquire_duration: OUTCOMES.map(|outcome| {
                    histogram(ACQUIRE_DURATION, Some(("outcome", outcome.as_str())))
                }),
                waiters: gauge(WAITERS),
                handoff_duration: histogram(HANDOFF_DURATION, None),
                held: gauge(HELD),
                hold_duration: histogram(HOLD_DURATION, None),
                renewals: RENEWAL_OUTCOMES
                    .map(|outcome| counter(RENEWALS, Some(("outcome", outcome)))),
                losses: LOST_REASONS.map(|lost| counter(LOSSES, Some(("reason", lost.as_str())))),
            }))
        }

        pub(crate) fn acquisition(&self, outcome: Outcome, waited: Duration) {
            let index = outcome as usize;
            self.0.acquisitions[index].increment(1);
            self.0.acquire_duration[index].record(waited.as_secs_f64());
        }

        pub(crate) fn waiters(&self, by: f64) {
            self.0.waiters.increment(by);
        }

        pub(crate) fn handoff(&self, latency: Duration) {
            self.0.handoff_duration.record(latency.as_secs_f64());
        }

        pub(crate) fn held(&self, by: f64) {
            self.0.held.increment(by);
        }

        pub(crate) fn renewal(&self, renewal: Renewal) {
            self.0.renewals[renewal as usize].increment(1);
        }

        pub(crate) fn hold_ended(&self, held: Duration, lost: Option<Lost>) {
            self.0.held.decrement(1.0);
            self.0.hold_duration.record(held.as_secs_f64());
            if let Some(lost) = lost {
                self.0.losses[lost as usize].increment(1);
            }
        }
    }

    fn describe(recorder: &dyn Recorder) {
        let name = KeyName::from_const_str;
        recorder.describe_counter(
            name(ACQUISITIONS),
            None,
            "Lock acquisitions, by outcome: acquired, busy, timeout, cancelled, error".into(),
        );
        recorder.describe_histogram(
            name(ACQUIRE_DURATION),
            Some(Unit::Seconds),
            "Time from a lock request to its outcome (the time spent waiting), by outcome".into(),
        );
        recorder.describe_gauge(
            name(WAITERS),
            None,
            "Requests waiting for a lock another owner holds".into(),
        );
        recorder.describe_histogram(
            name(HANDOFF_DURATION),
            Some(Unit::Seconds),
            "Time from a release to the waiter it handed the lock to holding it".into(),
        );
        recorder.describe_gauge(name(HELD), None, "Locks held by this process".into());
        recorder.describe_histogram(
            name(HOLD_DURATION),
            Some(Unit::Seconds),
            "Time from acquiring a lock to releasing or losing it".into(),
        );
        recorder.describe_counter(
            name(RENEWALS),
            None,
            "Renewals of held locks, by outcome: renewed, failed, refused".into(),
        );
        recorder.describe_counter(
            name(LOSSES),
            None,
            "Held locks lost, by reason: renewal_refused, extend_refused, lease_expired, gone_at_release".into(),
        );
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn instrument_arrays_follow_the_variants() {
            for (index, outcome) in OUTCOMES.into_iter().enumerate() {
                assert_eq!(outcome as usize, index);
            }
            for (index, lost) in LOST_REASONS.into_iter().enumerate() {
                assert_eq!(lost as usize, index);
            }
            assert_eq!(RENEWAL_OUTCOMES[Renewal::Renewed as usize], "renewed");
            assert_eq!(RENEWAL_OUTCOMES[Renewal::Failed as usize], "failed");
            assert_eq!(RENEWAL_OUTCOMES[Renewal::Refused as usize], "refused");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_print_to_the_microsecond() {
        assert_eq!(
            ms(Duration::from_nanos(1_427_858_412)).to_string(),
            "1427.858"
        );
        assert_eq!(ms(Duration::from_micros(1_428)).to_string(), "1.428");
        assert_eq!(ms(Duration::ZERO).to_string(), "0");
    }
}
