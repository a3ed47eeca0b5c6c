use lock_runtime::{LockError, distributed_lock};

#[distributed_lock("tenant:<self.tenant>")]
async fn free_function(tenant: String) -> Result<(), LockError> {
    Ok(())
}

fn main() {}
