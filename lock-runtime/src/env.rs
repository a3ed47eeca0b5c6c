//! Settings from the environment (`LockerBuilder::from_env`, which documents the
//! variables).

use std::time::Duration;

use crate::LockError;
use crate::settings::{DEFAULT_REDIS_URL, Settings, Target};

type SetDuration = fn(&mut Settings, Duration);

/// The duration variables, with what they set.
const DURATIONS: [(&str, SetDuration); 6] = [
    ("LOCK_TTL", |settings, value| settings.ttl = value),
    ("LOCK_WAIT", |settings, value| settings.wait = value),
    ("LOCK_POLL_INTERVAL", |settings, value| {
        settings.poll_interval = value
    }),
    ("LOCK_CONNECT_TIMEOUT", |settings, value| {
        settings.connect_timeout = value
    }),
    ("LOCK_COMMAND_TIMEOUT", |settings, value| {
        settings.command_timeout = value
    }),
    ("LOCK_SERVER_TIMEOUT", |settings, value| {
        settings.server_timeout = Some(value)
    }),
];

/// The settings and target that the variables (read by `var`; empty counts as unset)
/// give, over the defaults.
pub(crate) fn read(var: impl Fn(&str) -> Option<String>) -> Result<(Settings, Target), LockError> {
    let mut settings = Settings::default();
    if let Some(prefix) = var("LOCK_PREFIX") {
        settings.prefix = prefix;
    }
    for (name, set) in DURATIONS {
        if let Some(value) = var(name) {
            let duration = parse_duration(&value).ok_or_else(|| {
                LockError::Config(format!(
                    "{name}={value:?} is not a duration; write e.g. `250ms`, `30s`, `2m` or plain seconds"
                ))
            })?;
            set(&mut settings, duration);
        }
    }
    let list = |name: &str| -> Vec<String> {
        var(name)
            .iter()
            .flat_map(|urls| urls.split(','))
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let (cluster, redlock) = (list("REDIS_CLUSTER_URLS"), list("REDIS_URLS"));
    let sentinels = list("REDIS_SENTINEL_URLS");
    let target = if !sentinels.is_empty() {
        let master = var("REDIS_SENTINEL_MASTER").ok_or_else(|| {
            LockError::Config(
                "REDIS_SENTINEL_URLS is set but REDIS_SENTINEL_MASTER is not: name the master the sentinels watch".into(),
            )
        })?;
        Target::Sentinel {
            master,
            urls: sentinels,
        }
    } else if !cluster.is_empty() {
        Target::Cluster(cluster)
    } else if !redlock.is_empty() {
        Target::Redlock(redlock)
    } else {
        Target::Redis(var("REDIS_URL").unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned()))
    };
    Ok((settings, target))
}

/// `250ms`, `30s`, `1.5s`, `2m`, `1h`, or plain (possibly fractional) seconds.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_the_attribute() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration(" 1h "), Some(Duration::from_secs(3600)));
        for bad in ["", "s", "1x", "-1s", "1e400", "ten"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn variables_set_the_settings_and_the_target() {
        let vars = |name: &str| -> Option<String> {
            match name {
                "REDIS_URLS" => Some("redis://a:1, redis://b:2,,redis://c:3".into()),
                "LOCK_PREFIX" => Some("shop:".into()),
                "LOCK_COMMAND_TIMEOUT" => Some("500ms".into()),
                "LOCK_POLL_INTERVAL" => Some("2".into()),
                _ => None,
            }
        };
        let (settings, target) = read(vars).unwrap();
        let urls = ["redis://a:1", "redis://b:2", "redis://c:3"].map(str::to_owned);
        assert_eq!(target, Target::Redlock(urls.to_vec()));
        assert_eq!(settings.prefix, "shop:");
        assert_eq!(settings.command_timeout, Duration::from_millis(500));
        assert_eq!(settings.poll_interval, Duration::from_secs(2));
        let sentinel = read(|name| match name {
            "REDIS_SENTINEL_URLS" => Some("redis://s:26379".into()),
            "REDIS_SENTINEL_MASTER" => Some("primary".into()),
            _ => None,
        });
        assert_eq!(
            sentinel.unwrap().1,
            Target::Sentinel {
                master: "primary".into(),
                urls: vec!["redis://s:26379".into()]
            }
        );
        let half = read(|name| (name == "REDIS_SENTINEL_URLS").then(|| "redis://s:1".into()));
        assert!(
            half.unwrap_err()
                .to_string()
                .contains("REDIS_SENTINEL_MASTER")
        );
        let cluster = read(|name| (name == "REDIS_CLUSTER_URLS").then(|| "redis://n:1".into()));
        assert_eq!(
            cluster.unwrap().1,
            Target::Cluster(vec!["redis://n:1".into()])
        );

        let err = read(|name| (name == "LOCK_TTL").then(|| "soon".into())).unwrap_err();
        let err = err.to_string();
        assert!(err.contains("LOCK_TTL") && err.contains("soon"), "{err}");
        assert_eq!(
            read(|_| None).unwrap().1,
            Target::Redis(DEFAULT_REDIS_URL.into())
        );
    }
}
