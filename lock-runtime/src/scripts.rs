//! The Lua scripts outside the queue protocol (which keeps its own in `queue/`), built
//! once and run as `EVALSHA`.
//!
//! Every script touches only keys passed in `KEYS` (Redis Cluster and Redis-compatible
//! servers require it; the test below checks it statically), and all of one call's keys
//! share a slot. The one exception by design: a release publishes a hand-off on the
//! channel the waiter registered with (its locker's inbox on one server, the lock's own
//! channel, in its slot, on Cluster).

use std::sync::LazyLock;

use redis::{FromRedisValue, RedisResult, Script, ToRedisArgs};

/// One call of a script: an `EVALSHA` command with its keys and arguments written
/// straight into it (redis-rs's `ScriptInvocation` buffers each argument on its own, then
/// copies them all into the command). Loads the script when the server does not have it.
#[derive(Debug)]
pub(crate) struct Eval {
    script: &'static Script,
    command: redis::Cmd,
    /// Keys still to add: every key comes before the first argument.
    keys_left: usize,
}

impl Eval {
    /// A call of `script` with `keys` keys (added first, with [`key`](Self::key)).
    pub(crate) fn new(script: &'static Script, keys: usize) -> Self {
        // Room for the keys (a lock's four names run to a few hundred bytes) and up to eight
        // arguments: growing the buffer argument by argument cost 8% of a client's CPU in
        // lockbench's 64-task workload.
        let mut command = redis::Cmd::with_capacity(3 + keys + 8, 160 + 96 * keys);
        command.arg("EVALSHA").arg(script.get_hash()).arg(keys);
        Self {
            script,
            command,
            keys_left: keys,
        }
    }

    /// Adds the next key.
    pub(crate) fn key(&mut self, key: impl ToRedisArgs) -> &mut Self {
        debug_assert!(self.keys_left > 0, "more keys than announced");
        self.keys_left = self.keys_left.saturating_sub(1);
        self.command.arg(key);
        self
    }

    /// Adds the next argument (after every key).
    pub(crate) fn arg(&mut self, arg: impl ToRedisArgs) -> &mut Self {
        debug_assert_eq!(self.keys_left, 0, "an argument before the last key");
        self.command.arg(arg);
        self
    }

    /// Runs the call on `connection`, loading the script first if the server lacks it.
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        connection: &mut impl redis::aio::ConnectionLike,
    ) -> RedisResult<T> {
        debug_assert_eq!(self.keys_left, 0, "fewer keys than announced");
        match self.command.query_async(connection).await {
            Err(error)
                if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                self.script.load_async(connection).await?;
                self.command.query_async(connection).await
            }
            answer => answer,
        }
    }
}

/// `SET NX PX` plus the next fencing token.
pub(crate) static ACQUIRE_FENCED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/clock.lua"),
        include_str!("scripts/acquire_fenced.lua")
    ))
});

/// Owner-checked change of one lock's expiry (renew, add, set).
pub(crate) static EXTEND: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/extend.lua")));

/// Owner-checked renewal of many locks and semaphore permits.
pub(crate) static EXTEND_MANY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/clock.lua"),
        include_str!("scripts/semaphore.lua"),
        include_str!("scripts/extend_many.lua")
    ))
});

/// Owner-checked change of one semaphore permit's lease (renew, add, set).
pub(crate) static SEMAPHORE_EXTEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/clock.lua"),
        include_str!("scripts/semaphore.lua"),
        include_str!("scripts/semaphore_extend.lua")
    ))
});

/// An owner's lease and the first lease to end, of a semaphore.
pub(crate) static SEMAPHORE_INSPECT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("scripts/clock.lua"),
        include_str!("scripts/semaphore.lua"),
        include_str!("scripts/semaphore_inspect.lua")
    ))
});

/// Owner-checked delete that announces a free (Redlock's servers).
pub(crate) static RELEASE_FREE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/release_free.lua")));

#[cfg(test)]
mod tests {
    /// Every script, with the shared helpers it is built from.
    const SCRIPTS: [(&str, &str); 15] = [
        ("clock.lua", include_str!("scripts/clock.lua")),
        (
            "acquire_fenced.lua",
            include_str!("scripts/acquire_fenced.lua"),
        ),
        ("extend.lua", include_str!("scripts/extend.lua")),
        ("extend_many.lua", include_str!("scripts/extend_many.lua")),
        ("release_free.lua", include_str!("scripts/release_free.lua")),
        ("queue.lua", include_str!("queue/queue.lua")),
        (
            "acquire_queued.lua",
            include_str!("queue/acquire_queued.lua"),
        ),
        ("release_fast.lua", include_str!("queue/release_fast.lua")),
        ("release.lua", include_str!("queue/release.lua")),
        ("semaphore.lua", include_str!("scripts/semaphore.lua")),
        (
            "semaphore_extend.lua",
            include_str!("scripts/semaphore_extend.lua"),
        ),
        (
            "semaphore_inspect.lua",
            include_str!("scripts/semaphore_inspect.lua"),
        ),
        (
            "semaphore_acquire.lua",
            include_str!("queue/semaphore_acquire.lua"),
        ),
        (
            "semaphore_release.lua",
            include_str!("queue/semaphore_release.lua"),
        ),
        ("(none)", ""),
    ];

    /// Commands whose first argument is not a key.
    const NOT_KEYED: [&str; 3] = ["TIME", "PUBLISH", "SPUBLISH"];

    /// Names that hold keys: `KEYS[...]`, `key` (extend_many's loop variable), and the
    /// helpers' parameters (`fence`, `queue`, `waiting`, `holders`), which every caller
    /// passes from `KEYS` (checked below too).
    const KEY_NAMES: [&str; 5] = ["key", "fence", "queue", "waiting", "holders"];

    /// The first argument of every `redis.call('CMD', arg` / `redis.pcall(...)` in
    /// `source`, with the command.
    fn calls(source: &str) -> Vec<(String, String)> {
        let mut found = Vec::new();
        for line in source
            .lines()
            .filter(|line| !line.trim_start().starts_with("--"))
        {
            let mut rest = line;
            while let Some(at) = rest.find("redis.") {
                rest = &rest[at + "redis.".len()..];
                let Some(args) = rest
                    .strip_prefix("call(")
                    .or_else(|| rest.strip_prefix("pcall("))
                else {
                    continue;
                };
                let mut parts = args.split([',', ')']);
                let command = parts.next().unwrap_or_default().trim();
                let command = command
                    .strip_prefix('\'')
                    .and_then(|c| c.strip_suffix('\''));
                let first = parts.next().unwrap_or_default().trim().to_owned();
                // A computed command (`notify == 's' and 'SPUBLISH' or 'PUBLISH'`) is a
                // publish; it is not a key command.
                found.push((command.unwrap_or("PUBLISH").to_owned(), first));
            }
        }
        found
    }

    #[test]
    fn scripts_touch_only_keys_they_were_given() {
        for (name, source) in SCRIPTS {
            for (command, first) in calls(source) {
                if NOT_KEYED.contains(&command.as_str()) {
                    continue;
                }
                let keyed = first.starts_with("KEYS[") || KEY_NAMES.contains(&first.as_str());
                assert!(
                    keyed,
                    "{name}: redis.call('{command}', {first} ...) is not a KEYS entry"
                );
            }
        }
    }

    #[test]
    fn helpers_are_called_with_keys() {
        // The helpers' key parameters receive KEYS entries at every call site, called
        // directly (`helper(KEYS[1], ...)`) or protected (`pcall(helper, KEYS[1], ...)`).
        let helpers = [
            "next_fence",
            "leave",
            "won",
            "first_waiter",
            "first_admitted",
            "prune",
            "join",
            "live_holders",
            "set_lease",
            "lease_of",
            "renew_lease",
            "first_lease_left",
        ];
        let mut checked = 0;
        for (name, source) in SCRIPTS {
            for helper in helpers {
                let direct = format!("{helper}(");
                let protected = format!("pcall({helper},");
                for pattern in [&direct, &protected] {
                    for (at, _) in source.match_indices(pattern.as_str()) {
                        let before = &source[..at];
                        if before.ends_with("function ")
                            || before.ends_with(|c: char| c.is_alphanumeric() || c == '_')
                        {
                            continue;
                        }
                        let args = &source[at + pattern.len()..];
                        let first = args.split(',').next().unwrap_or_default().trim();
                        assert!(
                            first.starts_with("KEYS[") || KEY_NAMES.contains(&first),
                            "{name}: {pattern}{first}, ...) is not given a KEYS entry"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 20, "only {checked} call sites found");
    }

    #[test]
    fn the_check_finds_a_key_that_was_not_given() {
        let bad = "redis.call('DEL', 'lock:{x}')\nredis.call('GET', ARGV[1])";
        let calls = calls(bad);
        assert_eq!(calls.len(), 2);
        assert!(calls.iter().all(|(_, first)| !first.starts_with("KEYS[")));
    }
}
