//! One result line: a measured figure, its ratio to the round-trip baseline, and the
//! target it is held to.

use serde::Serialize;

/// One measured figure.
#[derive(Debug, Serialize)]
pub(crate) struct Figure {
    pub(crate) workload: &'static str,
    pub(crate) metric: String,
    pub(crate) value: f64,
    pub(crate) unit: &'static str,
    /// The value divided by the RTT baseline (latencies) where that means something.
    pub(crate) per_rtt: Option<f64>,
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
            target: None,
            met: None,
        }
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
}

/// Prints figures as a table.
pub(crate) fn table(figures: &[Figure]) {
    println!(
        "{:<11} {:<34} {:>14} {:<8} {:>8}  target",
        "workload", "metric", "value", "unit", "x RTT"
    );
    for figure in figures {
        let per_rtt = figure
            .per_rtt
            .map_or(String::new(), |ratio| format!("{ratio:.2}"));
        let target = match (&figure.target, figure.met) {
            (Some(target), Some(true)) => format!("{target}  ok"),
            (Some(target), _) => format!("{target}  MISSED"),
            _ => String::new(),
        };
        println!(
            "{:<11} {:<34} {:>14} {:<8} {:>8}  {}",
            figure.workload,
            figure.metric,
            format_value(figure.value),
            figure.unit,
            per_rtt,
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
