use lock_runtime::distributed_lock;

#[distributed_lock("job", timeout = 30, min_hold = 60, skip)]
async fn explicit_timeout() {}

// `min_hold` against the locker's default TTL is checked at run time:
// tests/pass/args-runtime-checked-options.rs.

fn main() {}
