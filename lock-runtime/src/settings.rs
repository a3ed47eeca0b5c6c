//! A locker's settings: their defaults, their bounds (checked where they enter), and
//! where the locks go.

use std::time::Duration;

use crate::driver::Timeouts;
use crate::{LockError, key, millis};

/// The default `REDIS_URL` of [`Locker::from_env`](crate::Locker::from_env).
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "lock:";

/// The longest poll interval: a missed notification costs at most this.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(3600);

/// The longest connect or command timeout.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// A locker's settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) prefix: String,
    pub(crate) ttl: Duration,
    pub(crate) wait: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) server_timeout: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            ttl: Duration::from_secs(30),
            wait: Duration::ZERO,
            poll_interval: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(2),
            server_timeout: None,
        }
    }
}

/// Where the locks go, when the environment says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Redis(String),
    Redlock(Vec<String>),
    Cluster(Vec<String>),
    Sentinel { master: String, urls: Vec<String> },
}

impl Default for Target {
    fn default() -> Self {
        Self::Redis(DEFAULT_REDIS_URL.to_owned())
    }
}

impl Settings {
    /// Checks every setting: none may make a later step fail or overflow.
    pub(crate) fn check(self) -> Result<Self, LockError> {
        key::check_prefix(&self.prefix)?;
        let one_ms = Duration::from_millis(1);
        let bounds = [
            ("the default TTL", self.ttl, one_ms, millis::MAX),
            ("the default wait", self.wait, Duration::ZERO, millis::MAX),
            (
                "the poll interval",
                self.poll_interval,
                one_ms,
                MAX_POLL_INTERVAL,
            ),
            (
                "the connect timeout",
                self.connect_timeout,
                one_ms,
                MAX_TIMEOUT,
            ),
            (
                "the command timeout",
                self.command_timeout,
                one_ms,
                MAX_TIMEOUT,
            ),
        ];
        for (what, value, min, max) in bounds {
            millis::check(what, value, min).map_err(LockError::Config)?;
            if value > max {
                return Err(LockError::Config(format!(
                    "{what} {value:?} is too long; use at most {max:?}"
                )));
            }
        }
        if let Some(timeout) = self.server_timeout {
            millis::check("the Redlock server timeout", timeout, one_ms)
                .map_err(LockError::Config)?;
            if timeout > MAX_TIMEOUT {
                return Err(LockError::Config(format!(
                    "the Redlock server timeout {timeout:?} is too long; use at most {MAX_TIMEOUT:?}"
                )));
            }
        }
        Ok(self)
    }

    /// The connection timeouts.
    pub(crate) fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: self.connect_timeout,
            command: self.command_timeout,
        }
    }
}
