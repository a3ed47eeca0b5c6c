//! One result line: a measured figure, its ratio to the round-trip baseline, the spread
//! over interleaved rounds, and the target it is held to.

use serde::Serialize;

use crate::stats::{median, spread};

/// One measured figure.
#[derive(Debug, Serialize)]
pub(crate) struct Figure {
    pub(crate) workload: &'static str,
    pub(crate) metric: String,
    /// For figures measured over several rounds: the median of the rounds.
    pub(crate) value: f64,
    pub(crate) unit: &'static str,
    /// The value divided by the RTT baseline (latencies) where that means something.
    pub(crate) per_rtt: Option<f64>,
    /// For figures measured over several rounds: the smallest and the largest round.
    pub(crate) rounds: Option<[f64; 2]>,
    /// The target, as text, and whether it was met.
    pub(crate) target: Option<String>,
    pub(crate) met: Option<bool>,
}

impl Figure {
    pub(crate) fn new(
        workload: &'static str,
        metric: impl Into<String>,
        value: f64,
        unit: &'static str,
    ) -> Self {
        Self {
            workload,
            metric: metric.into(),
            value,
            unit,
            per_rtt: None,
            rounds: None,
            target: None,
            met: None,
        }
    }

    /// A figure measured once per round: the median, with the smallest and largest round.
    pub(crate) fn rounds(
        workload: &'static str,
        metric: impl Into<String>,
        values: &[f64],
        unit: &'static str,
    ) -> Self {
        let mut figure = Self::new(workload, metric, median(values), unit);
        if values.len() > 1 {
            figure.rounds = Some(spread(values));
        }
        figure
    }

    pub(crate) fn per_rtt(mut self, rtt_micros: f64) -> Self {
        self.per_rtt = Some(self.value / rtt_micros);
        self
    }

    pub(crate) fn target(mut self, target: impl Into<String>, met: bool) -> Self {
        self.target = Some(target.into());
        self.met = Some(met);
        self
    }

    /// Held to `value <= limit`.
    pub(crate) fn at_most(self, limit: f64) -> Self {
        let met = self.value <= limit;
        self.target(format!("<= {limit}"), met)
    }

    /// Held to `value >= limit`.
    pub(crate) fn at_least(self, limit: f64) -> Self {
        let met = self.value >= limit;
        self.target(format!(">= {limit}"), met)
    }
}

/// Prints figures as a table.
pub(crate) fn table(figures: &[Figure]) {
    println!(
        "{:<11} {:<46} {:>10} {:<6} {:>6} {:>17}  target",
        "workload", "metric", "value", "unit", "x RTT", "rounds min-max"
    );
    for figure in figures {
        let per_rtt = figure
            .per_rtt
            .map_or(String::new(), |ratio| format!("{ratio:.2}"));
        let rounds = figure.rounds.map_or(String::new(), |[min, max]| {
            format!("{}-{}", format_value(min), format_value(max))
        });
        let target = match (&figure.target, figure.met) {
            (Some(target), Some(true)) => format!("{target}  ok"),
            (Some(target), _) => format!("{target}  MISSED"),
            _ => String::new(),
        };
        println!(
            "{:<11} {:<46} {:>10} {:<6} {:>6} {:>17}  {}",
            figure.workload,
            figure.metric,
            format_value(figure.value),
            figure.unit,
            per_rtt,
            rounds,
            target
        );
    }
}

fn format_value(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
    }
}
