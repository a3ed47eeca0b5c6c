//! A lock's names on the server: its key, fencing counter, queue of waiters and
//! notification channel; the same for a semaphore, whose key holds its permits.
//!
//! Every name is the key plus a suffix, and the key puts the whole lock name inside a hash
//! tag (`lock:{order:42}`), so all of one lock's keys and channels hash to the same Redis
//! Cluster slot and every script touches one slot. The tag is the text between the first
//! `{` and the next `}`, so a `}` inside a name would cut it short (and `{}` would make it
//! empty): names are encoded so the tag is always the whole name, and two different names
//! never share a key. The prefix may not contain braces at all, or it would choose the
//! slot instead of the name.

use std::fmt;
use std::io::Write;

use crate::LockError;

/// The lock's name and its key, in one allocation; the other server-side names are the
/// key plus a suffix ([`Name`]), written where they are used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LockKeys {
    /// The lock's name, then its key.
    names: String,
    /// Where the lock's name ends in `names`.
    name_end: usize,
    kind: Kind,
}

/// A server-side name of a lock: its key and a suffix. Written into a command as one
/// argument without building a `String` first; `to_string()` where a `String` is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Name<'a> {
    key: &'a str,
    suffix: &'static str,
}

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key)?;
        f.write_str(self.suffix)
    }
}

impl redis::ToRedisArgs for Name<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        let mut arg = out.writer_for_next_arg();
        // Writing to a command's buffer cannot fail.
        let _ = arg.write_all(self.key.as_bytes());
        let _ = arg.write_all(self.suffix.as_bytes());
    }
}

/// What a name stands for on the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A lock: its key is a string holding the owner token.
    Lock,
    /// A semaphore: its key is a sorted set of owner tokens scored by lease end, and an
    /// acquire is admitted while fewer than `permits` leases are live.
    Semaphore { permits: u32 },
}

/// What a semaphore's key adds after the hash tag: `lock:{api:7}:sem`. No lock name
/// produces it (a lock's key ends at the tag, its other names have other suffixes), so
/// a lock and a semaphore may share a name.
const SEMAPHORE: &str = ":sem";

/// Checks a key prefix: it must not contain a hash tag's braces.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), LockError> {
    if prefix.contains(['{', '}']) {
        return Err(LockError::Config(format!(
            "the key prefix `{prefix}` contains `{{` or `}}`; they would choose the Redis Cluster \
             slot of every lock instead of the lock's name"
        )));
    }
    Ok(())
}

/// `name` with `%` and `}` percent-encoded, so that it can sit whole inside a hash tag and
/// stays distinct from every other name. Most names are returned unchanged.
fn encode(name: &str) -> std::borrow::Cow<'_, str> {
    if !name.contains(['%', '}']) {
        return name.into();
    }
    let mut encoded = String::with_capacity(name.len() + 8);
    for char in name.chars() {
        match char {
            '%' => encoded.push_str("%25"),
            '}' => encoded.push_str("%7D"),
            other => encoded.push(other),
        }
    }
    encoded.into()
}

impl LockKeys {
    /// The names of the lock `name` under `prefix`; an empty name is a
    /// [`LockError::Config`]. The prefix was checked by [`check_prefix`].
    pub(crate) fn new(prefix: &str, name: &str) -> Result<Self, LockError> {
        if name.is_empty() {
            return Err(LockError::Config(
                "the lock name is empty; name the resource, e.g. `order:42`".into(),
            ));
        }
        Ok(Self::build(
            name,
            &[prefix, "{", &encode(name), "}"],
            Kind::Lock,
        ))
    }

    /// The names of the semaphore `name` with `permits` permits (at least 1) under
    /// `prefix`.
    pub(crate) fn semaphore(prefix: &str, name: &str, permits: u32) -> Result<Self, LockError> {
        if permits == 0 {
            return Err(LockError::Config(format!(
                "semaphore `{name}`: 0 permits would admit nobody; give at least 1"
            )));
        }
        let lock = Self::new(prefix, name)?;
        let tag = &lock.key()[prefix.len()..];
        Ok(Self::build(
            name,
            &[prefix, tag, SEMAPHORE],
            Kind::Semaphore { permits },
        ))
    }

    fn build(name: &str, key_parts: &[&str], kind: Kind) -> Self {
        let key_len: usize = key_parts.iter().map(|part| part.len()).sum();
        let mut names = String::with_capacity(name.len() + key_len);
        names.push_str(name);
        key_parts.iter().for_each(|part| names.push_str(part));
        Self {
            names,
            name_end: name.len(),
            kind,
        }
    }

    /// A lock's or a semaphore's.
    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    /// A semaphore's permits; `None` for a lock.
    pub(crate) fn permits(&self) -> Option<u32> {
        match self.kind {
            Kind::Lock => None,
            Kind::Semaphore { permits } => Some(permits),
        }
    }

    fn name(&self, suffix: &'static str) -> Name<'_> {
        Name {
            key: self.key(),
            suffix,
        }
    }

    /// The lock's name, as the user gave it.
    pub(crate) fn lock_name(&self) -> &str {
        &self.names[..self.name_end]
    }

    /// `{prefix}{{name}}`: holds the owner token, with a PX expiry. A semaphore's,
    /// `{prefix}{{name}}:sem`, is a sorted set of owner tokens scored by lease end (ms).
    pub(crate) fn key(&self) -> &str {
        &self.names[self.name_end..]
    }

    /// `{key}:fence`: the last fencing token issued, expiring with the lock's lease.
    pub(crate) fn fence(&self) -> Name<'_> {
        self.name(":fence")
    }

    /// `{key}:queue`: a sorted set of waiting owner tokens, scored by arrival time.
    pub(crate) fn queue(&self) -> Name<'_> {
        self.name(":queue")
    }

    /// `{key}:waiting`: a hash of waiting owner tokens to their entries (see `queue`).
    pub(crate) fn waiting(&self) -> Name<'_> {
        self.name(":waiting")
    }

    /// `{key}:released`: the channel a release publishes on when waiters listen per lock
    /// (Redlock: frees; Cluster: hand-offs, on sharded pub/sub).
    pub(crate) fn channel(&self) -> Name<'_> {
        self.name(":released")
    }

    /// The Redis Cluster hash slot of every name of this lock.
    pub(crate) fn slot(&self) -> u16 {
        slot(self.key())
    }
}

/// The Redis Cluster hash slot of `key`: CRC16 (XMODEM) of its hash tag, modulo 16384.
pub(crate) fn slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes
        .iter()
        .position(|&byte| byte == b'{')
        .and_then(|open| {
            let rest = &bytes[open + 1..];
            rest.iter()
                .position(|&byte| byte == b'}')
                .filter(|&close| close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(bytes);
    crc16(tagged) % 16384
}

fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_a_hash_tag() {
        let keys = LockKeys::new("lock:", "order:42").unwrap();
        assert_eq!(keys.lock_name(), "order:42");
        assert_eq!(keys.key(), "lock:{order:42}");
        assert_eq!(keys.fence().to_string(), "lock:{order:42}:fence");
        assert_eq!(keys.queue().to_string(), "lock:{order:42}:queue");
        assert_eq!(keys.waiting().to_string(), "lock:{order:42}:waiting");
        assert_eq!(keys.channel().to_string(), "lock:{order:42}:released");
        let slot = keys.slot();
        for name in [keys.fence(), keys.queue(), keys.waiting(), keys.channel()] {
            assert_eq!(super::slot(&name.to_string()), slot, "{name}");
        }
        // As a command's argument: one argument, the whole name.
        let mut command = redis::cmd("GET");
        command.arg(keys.queue());
        assert_eq!(
            command.get_packed_command(),
            b"*2\r\n$3\r\nGET\r\n$21\r\nlock:{order:42}:queue\r\n"
        );
    }

    #[test]
    fn the_hash_tag_is_always_the_whole_name() {
        // The tag of the encoded key is the encoded name, never empty or cut at a `}`.
        for name in ["}", "{}", "a}b", "a{b}c", "}{", "100%", "%7D", "x}}", "é}ü"] {
            let keys = LockKeys::new("lock:", name).unwrap();
            let key = keys.key();
            let tag = &key["lock:{".len()..key.len() - 1];
            assert!(!tag.is_empty() && !tag.contains('}'), "{name} -> {key}");
            assert_eq!(keys.slot(), crc16(tag.as_bytes()) % 16384, "{name}");
        }
    }

    #[test]
    fn different_names_never_share_a_key() {
        let names = [
            "a}b", "a%7Db", "a%b", "a%25b", "a}", "a%7D", "%", "%25", "}",
        ];
        let keys: std::collections::HashSet<String> = names
            .iter()
            .map(|name| LockKeys::new("lock:", name).unwrap().key().to_owned())
            .collect();
        assert_eq!(keys.len(), names.len(), "{keys:?}");
    }

    #[test]
    fn slots_match_redis() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        assert_eq!(slot("123456789"), 12739);
        assert_eq!(slot("foo{}{bar}"), slot("foo{}{bar}")); // an empty tag hashes the whole key
        assert_eq!(slot("foo{{bar}}zap"), slot("{bar"));
    }

    #[test]
    fn a_semaphore_never_shares_a_name_with_a_lock() {
        let lock = LockKeys::new("lock:", "api:7").unwrap();
        let semaphore = LockKeys::semaphore("lock:", "api:7", 4).unwrap();
        assert_eq!(semaphore.key(), "lock:{api:7}:sem");
        assert_eq!(semaphore.queue().to_string(), "lock:{api:7}:sem:queue");
        assert_eq!(semaphore.channel().to_string(), "lock:{api:7}:sem:released");
        assert_eq!(semaphore.slot(), lock.slot());
        assert_eq!(semaphore.permits(), Some(4));
        assert_eq!(lock.permits(), None);
        let names = |keys: &LockKeys| {
            [
                keys.key().to_owned(),
                keys.fence().to_string(),
                keys.queue().to_string(),
                keys.waiting().to_string(),
                keys.channel().to_string(),
            ]
        };
        let lock_names = names(&lock);
        for name in names(&semaphore) {
            assert!(!lock_names.contains(&name), "{name}");
        }
        let weird = LockKeys::semaphore("lock:", "a}b", 2).unwrap();
        assert_eq!(weird.key(), "lock:{a%7Db}:sem");
        let zero = LockKeys::semaphore("lock:", "api:7", 0).unwrap_err();
        assert!(matches!(zero, LockError::Config(_)), "{zero}");
        assert!(LockKeys::semaphore("lock:", "", 1).is_err());
    }

    #[test]
    fn empty_name_and_braced_prefix_are_config_errors() {
        let err = LockKeys::new("lock:", "").unwrap_err();
        assert!(matches!(err, LockError::Config(_)), "{err}");
        assert!(err.to_string().contains("empty"));
        assert!(check_prefix("app{1}:").is_err());
        assert!(check_prefix("app:lock:").is_ok());
    }
}
