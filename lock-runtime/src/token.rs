//! Owner tokens: unique per acquire request, across every process sharing a server.

use std::fmt::Write;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// 64 random bits drawn once per process (from the OS, via a v4 UUID).
static PROCESS: LazyLock<u64> = LazyLock::new(|| uuid::Uuid::new_v4().as_u64_pair().0);

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A fresh token: the process's random prefix and a per-process counter, as 32 hex
/// digits. Unique within the process by the counter, and between processes unless two
/// of them draw the same 64 random bits. No system call per token, unlike a v4 UUID each.
pub(crate) fn next() -> String {
    let mut token = String::with_capacity(32);
    let count = NEXT.fetch_add(1, Ordering::Relaxed);
    // Writing to a String cannot fail.
    let _ = write!(token, "{:016x}{count:016x}", *PROCESS);
    token
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_differ_and_share_the_process_prefix() {
        let (a, b) = (super::next(), super::next());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert_eq!(a[..16], b[..16]);
        assert!(a.bytes().all(|byte| byte.is_ascii_hexdigit()));
    }
}
