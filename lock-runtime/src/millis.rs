//! Durations to and from the whole milliseconds Redis speaks, rounded so that the
//! client's lease never outlives the server's key: expiries sent to the server round up
//! (the key lives at least as long as the lease counted here), and times the server
//! reports are taken as they are (they are already whole milliseconds it will keep).
//! Public inputs are bounded where they enter ([`MAX`]), so nothing here overflows.

use std::time::Duration;

/// The longest TTL, wait, interval or extension accepted anywhere: about 34 years, far
/// inside Redis's PX range and `Instant` arithmetic.
pub(crate) const MAX: Duration = Duration::from_millis(1 << 40);

/// `duration` in whole milliseconds, rounded up, at least 1 (an expiry of 0 ms would
/// delete the key).
pub(crate) fn expiry(duration: Duration) -> u64 {
    let ms = duration.as_millis() + u128::from(!duration.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(ms).unwrap_or(u64::MAX).max(1)
}

/// A millisecond count reported by the server.
pub(crate) fn reported(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Whether `duration` is within the accepted bounds (`min` in whole milliseconds); `what`
/// names it in the error.
pub(crate) fn check(what: &str, duration: Duration, min: Duration) -> Result<(), String> {
    if duration < min {
        return Err(format!(
            "{what} must be at least {} ms (got {duration:?})",
            min.as_millis()
        ));
    }
    if duration > MAX {
        return Err(format!(
            "{what} {duration:?} is too long; use at most {MAX:?}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_round_up_and_never_reach_zero() {
        assert_eq!(expiry(Duration::from_millis(5)), 5);
        assert_eq!(expiry(Duration::from_micros(1_500)), 2);
        assert_eq!(expiry(Duration::from_nanos(1)), 1);
        assert_eq!(expiry(Duration::ZERO), 1);
        assert_eq!(expiry(Duration::from_secs(30)), 30_000);
        assert_eq!(expiry(Duration::MAX), u64::MAX);
    }

    #[test]
    fn the_lease_never_outlives_the_key() {
        for micros in [1, 999, 1_000, 1_001, 1_500, 2_999, 30_000_001] {
            let ttl = Duration::from_micros(micros);
            assert!(reported(expiry(ttl)) >= ttl, "{ttl:?}");
        }
    }

    #[test]
    fn bounds_are_checked_with_names() {
        let min = Duration::from_millis(1);
        assert!(check("the TTL", Duration::from_millis(1), min).is_ok());
        let low = check("the TTL", Duration::from_micros(500), min).unwrap_err();
        assert!(low.contains("the TTL must be at least 1 ms"), "{low}");
        let high = check("the TTL", Duration::MAX, min).unwrap_err();
        assert!(high.contains("too long"), "{high}");
    }
}
