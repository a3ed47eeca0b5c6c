//! Generics, lifetimes, where clauses, `impl Trait`, patterns, attributes and early exits
//! pass through the attribute unchanged.
#![deny(warnings)]

use std::fmt::Display;

use lock_runtime::{LockError, Locker, distributed_lock};

#[derive(Debug)]
enum AppError {
    Lock(LockError),
    Invalid(&'static str),
}

impl From<LockError> for AppError {
    fn from(error: LockError) -> Self {
        Self::Lock(error)
    }
}

struct Point {
    x: i32,
    y: i32,
}

/// Docs, `#[must_use]` and `pub(crate)` are kept.
#[must_use]
#[distributed_lock("generic:<id>")]
pub(crate) async fn generic<'a, T, U: Display>(id: U, items: &'a [T]) -> Result<&'a T, AppError>
where
    T: Sync,
{
    items.first().ok_or(AppError::Invalid("empty"))
}

#[distributed_lock("impl:<label>")]
async fn impl_trait(label: impl Display + Send, n: u32) -> Result<impl Display, AppError> {
    Ok(format!("{label}{n}"))
}

#[distributed_lock("pattern:<a>:<b>:<x>:<y>:<c>")]
async fn patterns((a, b): (u32, u32), Point { x, y }: Point, ref mut c: u8) -> Result<i64, AppError> {
    *c += 1;
    Ok(i64::from(a + b) + i64::from(x + y) + i64::from(*c))
}

// Arguments named like the expansion's locals do not collide with them.
#[distributed_lock("names:<key>:<guard>:<__lock_guard>:<__lock_name>", locker = locker)]
async fn clashing_names(
    locker: &Locker,
    key: &str,
    guard: u8,
    __lock_guard: u8,
    __lock_name: u8,
) -> Result<String, AppError> {
    Ok(format!("{key}{guard}{__lock_guard}{__lock_name}"))
}

#[distributed_lock("early:<n>")]
async fn early_exits(n: u32) -> Result<u32, AppError> {
    #![allow(clippy::needless_return)]
    if n == 0 {
        return Err(AppError::Invalid("zero"));
    }
    let parsed: u32 = "7".parse().map_err(|_| AppError::Invalid("parse"))?;
    if n == 1 {
        return Ok(parsed);
    }
    Ok(n + parsed)
}

#[distributed_lock("raw:<r#type>:<pair.0>:<literal><<")]
async fn raw_and_index(r#type: &str, pair: (u8, u8), literal: char) -> Result<String, AppError> {
    Ok(lock_runtime::current().unwrap().name().to_owned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    lock_runtime::set_default(Locker::memory());
    assert_eq!(*generic(1, &[5, 6]).await.unwrap(), 5);
    assert!(matches!(generic::<u8, _>("x", &[]).await, Err(AppError::Invalid("empty"))));
    assert_eq!(impl_trait("a", 1).await.unwrap().to_string(), "a1");
    assert_eq!(patterns((1, 2), Point { x: 3, y: 4 }, 5).await.unwrap(), 16);
    let locker = Locker::memory();
    assert_eq!(clashing_names(&locker, "k", 1, 2, 3).await.unwrap(), "k123");
    assert!(matches!(early_exits(0).await, Err(AppError::Invalid("zero"))));
    assert_eq!(early_exits(1).await.unwrap(), 7);
    assert_eq!(early_exits(2).await.unwrap(), 9);
    assert_eq!(raw_and_index("t", (1, 2), 'x').await.unwrap(), "raw:t:1:x<");
    // The lock is released on every exit, including the error path.
    assert!(!Locker::memory().is_locked("early:0").await.unwrap());
    assert!(!lock_runtime::default_locker().unwrap().is_locked("early:0").await.unwrap());
}
