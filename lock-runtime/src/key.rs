//! Lock names to Redis keys.

use crate::LockError;

/// The Redis names that belong to one lock, in one allocation.
///
/// The lock name sits inside a hash tag (`{...}`), so the lock key, its fencing counter,
/// its queue of waiters and its release channel hash to the same Redis Cluster slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LockKeys {
    /// The names one after the other, in the order of [`SUFFIXES`].
    names: String,
    /// Where each name ends in `names`.
    ends: [usize; SUFFIXES.len()],
}

/// What each name adds to the lock key.
const SUFFIXES: [&str; 5] = ["", ":fence", ":released", ":queue", ":waiting"];

impl LockKeys {
    /// Builds the keys of the lock `name` under `prefix`; an empty name is a
    /// [`LockError::Config`].
    pub(crate) fn new(prefix: &str, name: &str) -> Result<Self, LockError> {
        if name.is_empty() {
            return Err(LockError::Config(
                "the lock name is empty; name the resource, e.g. `order:42`".into(),
            ));
        }
        Ok(Self::build(&[prefix, "{", name, "}"]))
    }

    /// The names that belong to the lock key `key`.
    pub(crate) fn for_key(key: &str) -> Self {
        Self::build(&[key])
    }

    fn build(key_parts: &[&str]) -> Self {
        let key_len: usize = key_parts.iter().map(|part| part.len()).sum();
        let total = SUFFIXES.iter().map(|suffix| key_len + suffix.len()).sum();
        let mut names = String::with_capacity(total);
        let mut ends = [0; SUFFIXES.len()];
        for (end, suffix) in ends.iter_mut().zip(SUFFIXES) {
            key_parts.iter().for_each(|part| names.push_str(part));
            names.push_str(suffix);
            *end = names.len();
        }
        Self { names, ends }
    }

    fn name(&self, index: usize) -> &str {
        let start = index.checked_sub(1).map_or(0, |before| self.ends[before]);
        &self.names[start..self.ends[index]]
    }

    /// `{prefix}{{name}}`: holds the owner token, with a PX expiry.
    pub(crate) fn key(&self) -> &str {
        self.name(0)
    }

    /// `{key}:fence`: the fencing counter, INCR'd on every fenced acquire, no expiry.
    pub(crate) fn fence(&self) -> &str {
        self.name(1)
    }

    /// `{key}:released`: the pub/sub channel releases that free the lock publish to.
    pub(crate) fn channel(&self) -> &str {
        self.name(2)
    }

    /// `{key}:queue`: a list of waiting owner tokens, in arrival order.
    pub(crate) fn queue(&self) -> &str {
        self.name(3)
    }

    /// `{key}:waiting`: a hash of waiting owner tokens to `alive-until-ms:claim-ms:inbox`.
    pub(crate) fn waiting(&self) -> &str {
        self.name(4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_a_hash_tag() {
        let keys = LockKeys::new("lock:", "order:42").unwrap();
        assert_eq!(keys.key(), "lock:{order:42}");
        assert_eq!(keys.fence(), "lock:{order:42}:fence");
        assert_eq!(keys.channel(), "lock:{order:42}:released");
        assert_eq!(keys.queue(), "lock:{order:42}:queue");
        assert_eq!(keys.waiting(), "lock:{order:42}:waiting");
        assert_eq!(LockKeys::for_key("lock:{order:42}"), keys);
    }

    #[test]
    fn empty_name_is_a_config_error() {
        let err = LockKeys::new("lock:", "").unwrap_err();
        assert!(matches!(err, LockError::Config(_)), "{err}");
        assert!(err.to_string().contains("empty"));
    }
}
