//! Smoke tests of the test servers themselves (`lock_runtime::testing`): each kind starts,
//! works with a plain redis-rs client, survives its fault operations, and is gone after
//! drop.

use std::process::Command;
use std::time::{Duration, Instant};

use lock_runtime::testing::{
    RedisCluster, RedisServer, Role, SentinelGroup, TlsRedisServer, VALKEY_BIN_ENV, ValkeyServer,
    key_slot,
};
use lock_tests_integration::{raw_connection, replicated};
use redis::AsyncCommands;
use redis::cluster_async::ClusterConnection;

/// Whether a process with `pid` still runs (a zombie, dead but not yet reaped by an
/// init that reaps slowly, does not).
fn alive(pid: u32) -> bool {
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some(state == 'Z')
        })
        .unwrap_or(false);
    !zombie
        && Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
}

fn timed<T>(what: &str, start: impl FnOnce() -> std::io::Result<T>) -> T {
    let started = Instant::now();
    let value = start().unwrap_or_else(|error| panic!("starting {what}: {error}"));
    eprintln!("{what} started in {:?}", started.elapsed());
    value
}

#[tokio::test]
async fn a_server_with_a_memory_limit_evicts_or_refuses() {
    let lru = timed("redis-server (allkeys-lru)", || {
        RedisServer::builder()
            .arg("--maxmemory", "2mb")
            .arg("--maxmemory-policy", "allkeys-lru")
            .start()
    });
    let full = RedisServer::builder()
        .arg("--maxmemory", "2mb")
        .arg("--maxmemory-policy", "noeviction")
        .start()
        .unwrap();
    let value = vec![b'x'; 64 * 1024];
    let mut redis = raw_connection(&lru.url()).await;
    for i in 0..64 {
        let () = redis.set(format!("lru:{i}"), &value).await.unwrap();
    }
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        !info.contains("evicted_keys:0\r"),
        "nothing evicted:\n{info}"
    );

    let mut redis = raw_connection(&full.url()).await;
    let mut refused = None;
    for i in 0..64 {
        if let Err(error) = redis.set::<_, _, ()>(format!("full:{i}"), &value).await {
            refused = Some(error);
            break;
        }
    }
    let refused = refused.expect("a 2 MB server took 4 MB");
    assert!(refused.to_string().contains("OOM"), "{refused}");
}

#[tokio::test]
async fn a_password_and_an_acl_user_limited_to_lock_keys() {
    let server = RedisServer::builder().password("s3cret:@").start().unwrap();
    let mut admin = raw_connection(&server.url()).await;
    let () = admin.set("anything", 1).await.unwrap();

    let mut anonymous = redis::Client::open(server.url_without_password())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let err = anonymous
        .get::<_, Option<u8>>("anything")
        .await
        .unwrap_err();
    assert!(err.to_string().to_uppercase().contains("NOAUTH"), "{err}");

    let url = server
        .create_user("locker", "pw", &["~lock:*", "&lock:*", "+@all"])
        .unwrap();
    let mut locker = raw_connection(&url).await;
    let () = locker.set("lock:a", 1).await.unwrap();
    assert_eq!(locker.get::<_, u8>("lock:a").await.unwrap(), 1);
    let err = locker.set::<_, _, ()>("other", 1).await.unwrap_err();
    assert!(err.to_string().to_uppercase().contains("NOPERM"), "{err}");
    let whoami: String = redis::cmd("ACL")
        .arg("WHOAMI")
        .query_async(&mut locker)
        .await
        .unwrap();
    assert_eq!(whoami, "locker");
}

#[test]
fn a_server_that_does_not_start_reports_its_log() {
    let err = RedisServer::builder()
        .arg("--maxmemory-policy", "no-such-policy")
        .start()
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("exited at start"), "{message}");
    assert!(message.contains("maxmemory-policy"), "{message}");
}

#[test]
fn a_test_binary_killed_mid_run_leaves_no_server_behind() {
    let mut worker = lock_tests_integration::KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_lock-worker"))
            .arg("serve")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let line = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(worker.read_line());
    let pid: u32 = line.trim().strip_prefix("PID ").unwrap().parse().unwrap();
    assert!(alive(pid));
    drop(worker); // SIGKILL: no destructor runs in it
    let started = Instant::now();
    while alive(pid) && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !alive(pid),
        "redis-server {pid} outlived the process that started it"
    );
}

#[test]
fn a_test_that_panics_leaves_no_server_behind() {
    let (pids, received) = std::sync::mpsc::channel();
    let test = std::thread::spawn(move || {
        let server = RedisServer::start().unwrap();
        let tls = TlsRedisServer::start().unwrap();
        tls.pause().unwrap();
        pids.send([server.pid().unwrap(), tls.pid().unwrap()])
            .unwrap();
        panic!("a failing test");
    });
    assert!(test.join().is_err());
    let pids = received.recv().unwrap();
    assert!(
        pids.iter().all(|&pid| !alive(pid)),
        "{pids:?} outlived the panic"
    );
}

/// A key served by each master of `cluster`, with the master's number.
fn key_per_master(cluster: &RedisCluster) -> Vec<(usize, String)> {
    let masters = cluster.masters().unwrap();
    masters
        .iter()
        .map(|master| {
            let key = (0..)
                .map(|n| format!("key:{n}"))
                .find(|key| {
                    let slot = key_slot(key);
                    master.slots.iter().any(|range| range.contains(&slot))
                })
                .unwrap();
            (master.index, key)
        })
        .collect()
}

async fn cluster_client(cluster: &RedisCluster) -> ClusterConnection {
    redis::cluster::ClusterClient::new(cluster.urls())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_serves_every_master_and_migrates_a_slot_with_its_keys() {
    let cluster = timed("cluster (3 masters + 3 replicas)", RedisCluster::start);
    let topology = cluster.topology().unwrap();
    assert_eq!(topology.len(), 6);
    assert_eq!(
        topology.iter().filter(|n| n.role == Role::Master).count(),
        3
    );
    assert!(
        topology
            .iter()
            .filter(|n| n.role == Role::Replica)
            .all(|n| n.master.is_some_and(|m| topology[m].role == Role::Master))
    );

    let mut client = cluster_client(&cluster).await;
    for (master, key) in key_per_master(&cluster) {
        let () = client.set(&key, master).await.unwrap();
        assert_eq!(client.get::<_, usize>(&key).await.unwrap(), master);
        let mut direct = raw_connection(&cluster.node(master).unwrap().url()).await;
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(&key)
            .query_async(&mut direct)
            .await
            .unwrap();
        assert_eq!(slot, key_slot(&key), "{key}");
        assert_eq!(direct.get::<_, usize>(&key).await.unwrap(), master);
    }

    // Move a slot with keys in it to another master; the keys stay readable.
    let keys = ["lock:{moving}", "lock:{moving}:fence"];
    for key in keys {
        let () = client.set(key, "kept").await.unwrap();
    }
    let slot = key_slot(keys[0]);
    let from = cluster.master_of_slot(slot).unwrap();
    let to = cluster
        .masters()
        .unwrap()
        .into_iter()
        .find(|m| m.index != from)
        .unwrap()
        .index;
    let started = Instant::now();
    cluster.migrate_slot(slot, to).unwrap();
    eprintln!("slot migration took {:?}", started.elapsed());
    assert_eq!(cluster.master_of_slot(slot).unwrap(), to);
    let mut direct = raw_connection(&cluster.node(to).unwrap().url()).await;
    for key in keys {
        assert_eq!(direct.get::<_, String>(key).await.unwrap(), "kept");
        assert_eq!(client.get::<_, String>(key).await.unwrap(), "kept");
    }

    // A node number out of range is an error, not a panic.
    let err = cluster.failover(6).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    assert!(cluster.node(6).is_err() && cluster.pause(7).is_err());

    let pids: Vec<u32> = cluster.nodes().iter().filter_map(|n| n.pid()).collect();
    assert_eq!(pids.len(), 6);
    drop(cluster);
    assert!(
        pids.iter().all(|&pid| !alive(pid)),
        "a node outlived the drop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_fails_over_on_request_and_on_a_kill() {
    let mut cluster = RedisCluster::start().unwrap();
    let mut client = cluster_client(&cluster).await;
    let (master, key) = key_per_master(&cluster).remove(0);
    let () = client.set(&key, "before").await.unwrap();

    // A requested failover: the replica becomes the master, the old master its replica.
    let started = Instant::now();
    let promoted = cluster.failover(master).unwrap();
    eprintln!("CLUSTER FAILOVER took {:?}", started.elapsed());
    assert_ne!(promoted, master);
    assert_eq!(cluster.master_for_key(&key).unwrap(), promoted);
    assert_eq!(cluster.replicas_of(promoted).unwrap(), vec![master]);
    assert_eq!(client.get::<_, String>(&key).await.unwrap(), "before");

    // A kill: the old master's replica takes over by itself.
    let () = client.set(&key, "replicated").await.unwrap();
    let mut direct = raw_connection(&cluster.node(promoted).unwrap().url()).await;
    assert_eq!(replicated(&mut direct, 1).await, 1);
    cluster.kill(promoted).unwrap();
    let started = Instant::now();
    cluster.wait_until_healthy(Duration::from_secs(15)).unwrap();
    eprintln!("failover after a kill took {:?}", started.elapsed());
    assert_eq!(cluster.master_for_key(&key).unwrap(), master);
    assert_eq!(client.get::<_, String>(&key).await.unwrap(), "replicated");

    // The killed node comes back empty, as a replica of the new master.
    cluster.restart(promoted).unwrap();
    cluster.wait_until_healthy(Duration::from_secs(15)).unwrap();
    assert_eq!(cluster.replicas_of(master).unwrap(), vec![promoted]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_fail_over_a_killed_master() {
    let mut group = timed("sentinel group (1 + 1 + 3 sentinels)", SentinelGroup::start);
    let mut sentinel = redis::sentinel::SentinelClient::build(
        group.sentinel_urls(),
        group.master_name(),
        None,
        redis::sentinel::SentinelServerType::Master,
    )
    .unwrap();
    let mut master = sentinel.get_async_connection().await.unwrap();
    let () = master.set("lock:a", "before").await.unwrap();
    assert_eq!(replicated(&mut master, 1).await, 1);

    let old = group.kill_master().unwrap();
    assert_eq!(old, 0);
    let started = Instant::now();
    let new = group.wait_for_failover(old).unwrap();
    eprintln!(
        "sentinel failover after a kill took {:?}",
        started.elapsed()
    );
    assert_eq!(new, 1);
    assert_eq!(
        group.master_addr().unwrap().port(),
        group.servers()[1].port()
    );
    let mut master = sentinel.get_async_connection().await.unwrap();
    assert_eq!(master.get::<_, String>("lock:a").await.unwrap(), "before");
    let () = master.set("lock:a", "after").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_fail_over_a_paused_master_that_then_resumes() {
    let group = SentinelGroup::start().unwrap();
    let old = group.pause_master().unwrap();
    let new = group.wait_for_failover(old).unwrap();
    assert_ne!(new, old);
    group.resume(old).unwrap();
    // The sentinels keep the new master (they demote the old one some 10 s later).
    let mut resumed = raw_connection(&group.servers()[old].url()).await;
    let pong: String = redis::cmd("PING").query_async(&mut resumed).await.unwrap();
    assert_eq!(pong, "PONG");
    assert_eq!(group.master_index().unwrap(), new);
}

fn tls_client(server: &TlsRedisServer, ca: Vec<u8>) -> redis::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    redis::Client::build_with_tls(
        server.url(),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(ca),
        },
    )
    .unwrap()
}

#[tokio::test]
async fn tls_works_with_the_right_ca_only() {
    let server = timed(
        "TLS redis-server (with certificates)",
        TlsRedisServer::start,
    );
    assert!(server.url().starts_with("rediss://127.0.0.1:"));

    let client = tls_client(&server, server.ca_pem().unwrap());
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis.set("lock:tls", "yes").await.unwrap();
    assert_eq!(redis.get::<_, String>("lock:tls").await.unwrap(), "yes");

    let wrong = tls_client(&server, server.wrong_ca_pem().unwrap());
    let err = wrong.get_multiplexed_async_connection().await.unwrap_err();
    assert!(
        format!("{err:?}").contains("UnknownIssuer") || format!("{err:?}").contains("BadSignature"),
        "{err:?}"
    );

    // A plain-text client gets nowhere either.
    let plain =
        redis::Client::open(server.url_without_password().replace("rediss", "redis")).unwrap();
    let plain = tokio::time::timeout(
        Duration::from_secs(5),
        plain.get_multiplexed_async_connection(),
    )
    .await;
    assert!(!matches!(plain, Ok(Ok(_))));
}

#[tokio::test]
async fn valkey_when_its_binary_is_given() {
    if ValkeyServer::binary().is_none() {
        eprintln!("skipped: {VALKEY_BIN_ENV} is not set");
        return;
    }
    let mut server = timed("valkey-server", ValkeyServer::start);
    eprintln!("Valkey {}", server.version());
    let mut redis = raw_connection(&server.url()).await;
    let () = redis.set("lock:valkey", 1).await.unwrap();
    assert_eq!(redis.get::<_, u8>("lock:valkey").await.unwrap(), 1);
    server.restart().unwrap();
    let mut redis = raw_connection(&server.url()).await;
    assert_eq!(
        redis.get::<_, Option<u8>>("lock:valkey").await.unwrap(),
        None
    );
}
