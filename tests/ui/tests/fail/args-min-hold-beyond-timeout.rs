use lock_runtime::distributed_lock;

#[distributed_lock("job", timeout = 30, min_hold = 60, skip)]
async fn explicit_timeout() {}

#[distributed_lock("job", min_hold = "5m", skip)]
async fn default_timeout() {}

fn main() {}
