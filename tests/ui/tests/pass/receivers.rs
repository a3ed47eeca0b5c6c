//! Every receiver form, with the locker and key parts taken from `self`.

use std::sync::Arc;

use lock_runtime::{LockError, Locker, distributed_lock};

struct Service {
    tenant: String,
    locker: Locker,
    calls: u32,
}

impl Service {
    #[distributed_lock("tenant:<self.tenant>:read", locker = self.locker)]
    async fn by_ref(&self) -> Result<String, LockError> {
        Ok(lock_runtime::current().unwrap().name().to_owned())
    }

    #[distributed_lock("tenant:<self.tenant>:write", locker = self.locker)]
    async fn by_mut(&mut self) -> Result<u32, LockError> {
        self.calls += 1;
        Ok(self.calls)
    }

    #[distributed_lock("tenant:<self.tenant>:arc", locker = self.locker)]
    async fn by_arc(self: Arc<Self>) -> Result<usize, LockError> {
        Ok(Arc::strong_count(&self))
    }

    #[distributed_lock("tenant:<self.tenant>:consume", locker = self.locker)]
    async fn by_value(self) -> Result<String, LockError> {
        Ok(self.tenant)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut service = Service {
        tenant: "acme".into(),
        locker: Locker::memory(),
        calls: 0,
    };
    assert_eq!(service.by_ref().await.unwrap(), "tenant:acme:read");
    assert_eq!(service.by_mut().await.unwrap(), 1);
    let service = Arc::new(service);
    assert_eq!(service.clone().by_arc().await.unwrap(), 2);
    let service = Arc::into_inner(service).unwrap();
    assert_eq!(service.by_value().await.unwrap(), "acme");
}
