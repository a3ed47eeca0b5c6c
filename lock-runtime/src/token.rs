//! Owner tokens: unique per acquire request, across every process sharing a server.
//!
//! A token is a per-process random prefix (a v4 UUID: 122 bits from the operating
//! system's generator) followed by a per-process counter. The prefix is drawn again when
//! the process id changes, so a forked child never repeats its parent's tokens. Two
//! processes share a token only if they draw the same 122 random bits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// The random prefix and the process it was drawn in.
static PROCESS: Mutex<Option<(u32, uuid::Uuid)>> = Mutex::new(None);

const HEX: &[u8; 16] = b"0123456789abcdef";

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A fresh token: 32 hex digits of the process's random prefix and 16 of a counter.
pub(crate) fn next() -> String {
    let prefix = prefix(std::process::id());
    let count = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut token = String::with_capacity(48);
    token.push_str(
        prefix
            .simple()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    );
    // Hex digits by hand: `write!` through `fmt` cost more than the rest of a token.
    token.extend(
        (0..16)
            .rev()
            .map(|digit| char::from(HEX[(count >> (4 * digit)) as usize & 0xf])),
    );
    token
}

/// The prefix of the process `pid`, drawn on first use and again after a fork.
fn prefix(pid: u32) -> uuid::Uuid {
    prefix_in(&PROCESS, pid)
}

/// [`prefix`] kept in `state` (tests use their own, not the process's).
fn prefix_in(state: &Mutex<Option<(u32, uuid::Uuid)>>, pid: u32) -> uuid::Uuid {
    let mut process = state.lock().unwrap_or_else(PoisonError::into_inner);
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
        // The counter, in 16 hex digits.
        let count = |token: &str| u64::from_str_radix(&token[32..], 16).unwrap();
        assert!(count(&b) > count(&a));
        // (Other tests take tokens meanwhile: the next one is larger, not b + 1.)
        let c = next();
        assert!(count(&c) > count(&b));
        assert_eq!(c[32..], format!("{:016x}", count(&c)));
        // 122 random bits: the UUID's version and variant are its only fixed bits.
        assert_eq!(&a[12..13], "4");
    }

    #[test]
    fn another_process_id_draws_another_prefix() {
        // A state of its own: redrawing the process's prefix here would race with the
        // other test's tokens.
        let state = Mutex::new(None);
        let parent = prefix_in(&state, 7);
        assert_eq!(prefix_in(&state, 7), parent);
        let child = prefix_in(&state, 8);
        assert_ne!(parent, child);
        // Back in the original process: a new draw again, never the child's.
        assert_ne!(prefix_in(&state, 7), child);
    }
}
