//! Option names in messages: the valid ones, and the names users reach for from other
//! lock libraries (`ttl`, `key`, `retries`), each with what to write instead.

use proc_macro2::Ident;

pub(crate) const TEMPLATE_IS_POSITIONAL: &str = "the key template is the first, positional argument: \
     #[distributed_lock(\"order:<order_id>\", timeout = 30)]";

/// Names users reach for (from other lock libraries), with what to write instead.
const ALIASES: &[(&[&str], &str)] = &[
    (
        &[
            "key",
            "name",
            "template",
            "lock",
            "lock_key",
            "lock_name",
            "resource",
        ],
        TEMPLATE_IS_POSITIONAL,
    ),
    (
        &[
            "ttl",
            "expire",
            "expires",
            "expiry",
            "expiration",
            "lease",
            "lease_time",
            "lock_timeout",
        ],
        "the lock's time to live is `timeout`, e.g. `timeout = 30`",
    ),
    (
        &[
            "wait_timeout",
            "wait_time",
            "acquire_timeout",
            "block",
            "blocking",
            "blocking_timeout",
        ],
        "how long to wait for the lock is `wait`, e.g. `wait = 5`",
    ),
    (
        &["retry_interval", "interval", "backoff", "sleep"],
        "the delay between retries is `retry_delay`, e.g. `retry_delay = \"200ms\"`",
    ),
    (
        &[
            "retries",
            "max_retries",
            "attempts",
            "retry_times",
            "retry_count",
        ],
        "the number of retries is `retry`, e.g. `retry = 3`",
    ),
    (
        &[
            "renew",
            "renew_every",
            "renew_interval",
            "extend",
            "auto_extend",
            "watchdog",
            "keep_alive",
        ],
        "renewal is `auto_renew` (every third of the timeout) or `auto_renew = 10` (every 10 s)",
    ),
    (
        &[
            "try_lock",
            "skip_if_locked",
            "non_blocking",
            "nowait",
            "no_wait",
        ],
        "to return a default value without running the body when the lock is held, write `skip`",
    ),
    (&["fence", "fenced", "fencing_token"], "write `fencing`"),
    (
        &["reentrant_lock", "recursive", "reentry", "re_entrant"],
        "to share a lock this task already holds, write `reentrant`",
    ),
    (
        &[
            "semaphore",
            "limit",
            "max_concurrent",
            "concurrency",
            "permit",
        ],
        "to let N callers hold it at once (a semaphore), write `permits = N`",
    ),
    (
        &["client", "redis", "backend", "manager"],
        "the locker to use is `locker`, e.g. `locker = self.locker`",
    ),
];

/// What to write instead of `name`, if it is a known alias.
pub(crate) fn alias_hint(name: &Ident) -> Option<&'static str> {
    ALIASES
        .iter()
        .find(|(names, _)| names.iter().any(|alias| name == alias))
        .map(|(_, hint)| *hint)
}

/// The error for an unknown option: the option to write for a known alias, else the
/// closest option (if one is close) and the valid ones.
pub(crate) fn unknown(name: &Ident, options: &[&str]) -> syn::Error {
    let message = match alias_hint(name) {
        Some(hint) => format!("unknown option `{name}`: {hint}"),
        None => {
            let written = name.to_string();
            let near = options
                .iter()
                .map(|option| (strsim::damerau_levenshtein(&written, option), *option))
                .min()
                .filter(|(distance, _)| *distance <= (written.len() / 3).max(1))
                .map(|(_, option)| format!("did you mean `{option}`? "))
                .unwrap_or_default();
            format!("unknown option `{name}`; {near}{}", valid(options))
        }
    };
    syn::Error::new(name.span(), message)
}

/// "valid options are `timeout`, ...".
pub(crate) fn valid(options: &[&str]) -> String {
    let list: Vec<String> = options.iter().map(|name| format!("`{name}`")).collect();
    format!("valid options are {}", list.join(", "))
}
