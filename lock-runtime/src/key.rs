//! Lock names to Redis keys.

use crate::LockError;

/// The Redis names that belong to one lock.
///
/// The lock name sits inside a hash tag (`{...}`), so the lock key, its fencing counter,
/// its queue of waiters and its release channel hash to the same Redis Cluster slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LockKeys {
    /// `{prefix}{{name}}`: holds the owner token, with a PX expiry.
    pub(crate) key: String,
    /// `{key}:fence`: the fencing counter, INCR'd on every fenced acquire, no expiry.
    pub(crate) fence: String,
    /// `{key}:released`: the pub/sub channel the release script publishes to.
    pub(crate) channel: String,
    /// `{key}:queue`: a list of waiting owner tokens, in arrival order.
    pub(crate) queue: String,
    /// `{key}:waiting`: a hash of waiting owner tokens to `alive-until-ms:claim-ms`.
    pub(crate) waiting: String,
}

impl LockKeys {
    /// Builds the keys of the lock `name` under `prefix`; an empty name is a
    /// [`LockError::Config`].
    pub(crate) fn new(prefix: &str, name: &str) -> Result<Self, LockError> {
        if name.is_empty() {
            return Err(LockError::Config(
                "the lock name is empty; name the resource, e.g. `order:42`".into(),
            ));
        }
        let key = format!("{prefix}{{{name}}}");
        Ok(Self {
            fence: format!("{key}:fence"),
            channel: format!("{key}:released"),
            queue: format!("{key}:queue"),
            waiting: format!("{key}:waiting"),
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_a_hash_tag() {
        let keys = LockKeys::new("lock:", "order:42").unwrap();
        assert_eq!(keys.key, "lock:{order:42}");
        assert_eq!(keys.fence, "lock:{order:42}:fence");
        assert_eq!(keys.channel, "lock:{order:42}:released");
        assert_eq!(keys.queue, "lock:{order:42}:queue");
        assert_eq!(keys.waiting, "lock:{order:42}:waiting");
    }

    #[test]
    fn empty_name_is_a_config_error() {
        let err = LockKeys::new("lock:", "").unwrap_err();
        assert!(matches!(err, LockError::Config(_)), "{err}");
        assert!(err.to_string().contains("empty"));
    }
}
