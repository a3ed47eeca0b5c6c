//! Owner tokens: unique per acquire request, across every process sharing a server.
//!
//! A token is a per-process random prefix (a v4 UUID: 122 bits from the operating
//! system's generator) followed by a per-process counter. The prefix is drawn again when
//! the process id changes, so a forked child never repeats its parent's tokens. Two
//! processes share a token only if they draw the same 122 random bits.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// The random prefix and the process it was drawn in.
static PROCESS: Mutex<Option<(u32, uuid::Uuid)>> = Mutex::new(None);

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A fresh token: 32 hex digits of the process's random prefix and 16 of a counter.
pub(crate) fn next() -> String {
    let prefix = prefix(std::process::id());
    let count = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut token = String::with_capacity(48);
    // Writing to a String cannot fail.
    let _ = write!(token, "{}{count:016x}", prefix.simple());
    token
}

/// The prefix of the process `pid`, drawn on first use and again after a fork.
fn prefix(pid: u32) -> uuid::Uuid {
    let mut process = PROCESS.lock().unwrap_or_else(PoisonError::into_inner);
    match *process {
        Some((drawn_in, prefix)) if drawn_in == pid => prefix,
        _ => {
            let prefix = uuid::Uuid::new_v4();
            *process = Some((pid, prefix));
            prefix
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_differ_and_share_the_process_prefix() {
        let (a, b) = (next(), next());
        assert_ne!(a, b);
        assert_eq!(a.len(), 48);
        assert_eq!(a[..32], b[..32]);
        assert!(a.bytes().all(|byte| byte.is_ascii_hexdigit()));
        // 122 random bits: the UUID's version and variant are its only fixed bits.
        assert_eq!(&a[12..13], "4");
    }

    #[test]
    fn another_process_id_draws_another_prefix() {
        let parent = prefix(std::process::id());
        let child = prefix(std::process::id().wrapping_add(1));
        assert_ne!(parent, child);
        // Back in the original process (the test harness shares the static): a new draw
        // again, never the child's.
        assert_ne!(prefix(std::process::id()), child);
    }
}
