//! A separate OS process that takes locks, for the multi-process tests.
//!
//! `lock-worker count <url> <lock> <counter-key> <sections>`: runs `<sections>` critical
//! sections under the lock, each a non-atomic GET/SET increment of `<counter-key>`.
//!
//! `lock-worker attr-count <url> <lock> <counter-key> <sections>`: the same through a
//! `#[distributed_lock]` function.
//!
//! `lock-worker redlock-count <counter-url> <lock> <counter-key> <sections>`: the same as
//! `count` on a Redlock locker from `Locker::from_env()` (`REDIS_URLS`, and
//! `LOCK_SERVER_TIMEOUT`), with a 1 s TTL; the counter lives on the separate server at
//! `<counter-url>`. A section whose lock turns out lost at release still counts (and is
//! reported on stderr): the counter then shows whether exclusion held for it anyway.
//!
//! `lock-worker cluster-count <locks> <sections>`: runs `<sections>` critical sections on
//! a Redis Cluster from `Locker::from_env()` (`REDIS_CLUSTER_URLS`), round robin over the
//! comma-separated `<locks>`; each lock `L` guards the counter `counter:{L}` (in its slot).
//!
//! `lock-worker hold <url> <lock> <ttl-ms>`: acquires the lock, prints `ACQUIRED`, and
//! sleeps until killed.
//!
//! `lock-worker wait <url> <lock> <ttl-ms>`: waits (up to 60 s) for the lock with that
//! TTL, then prints `ACQUIRED` and sleeps until killed.
//!
//! `lock-worker semaphore <url> <name> <permits> <tasks> <sections> <tracker-url>`: runs
//! `<tasks>` tasks, each taking a permit of the semaphore `<sections>` times; inside, it
//! counts itself in on the separate server at `<tracker-url>` (`INCR inside`, keeping the
//! largest count in `most`), pauses 1 ms, and counts itself out.
//!
//! `lock-worker sem-hold <url> <name> <permits> <ttl-ms>`: takes a permit with that TTL,
//! renewed, prints `ACQUIRED`, and sleeps until killed.
//!
//! `lock-worker leader <url> <election> <ttl-ms> <store-url>`: campaigns for the
//! leadership, and while it leads, writes its epoch every 5 ms to the fenced store at
//! `<store-url>` (a script that rejects epochs older than the newest it accepted and logs
//! every write as `<epoch> <pid> <sent-us> <valid-until-us> <accepted>` in the list
//! `writes`; times are this machine's wall clock in microseconds). Prints
//! `ELECTED <epoch> <us>`, `LOST <epoch> <us>` and `RESIGNED <epoch> <us>` (the time
//! `resign` was called), campaigning again after each; a line `resign` on stdin resigns.
//!
//! `lock-worker serve`: starts a private `redis-server`, prints `PID <its pid>`, and
//! sleeps until killed (a test binary killed mid-run).
//!
//! `lock-worker abandon <url> <lock> <waiters> <poll-ms>`: starts that many waiters on the
//! lock (poll interval `<poll-ms>`), and sleeps until killed: killed, they leave their
//! queue entries behind, as crashed instances do.

use std::time::Duration;

use tokio::io::AsyncBufReadExt as _;

use lock_runtime::{LockError, Locker, distributed_lock};
use lock_tests_integration::Counter;

#[distributed_lock("<lock>", wait = 60, locker = locker)]
async fn locked_increment(
    locker: &Locker,
    lock: &str,
    counter: &mut Counter,
) -> Result<(), LockError> {
    counter.unsafe_increment().await;
    Ok(())
}

/// Counts a holder in: `INCR` the count inside, and keep the largest count seen.
static COUNT_IN: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        "local inside = redis.call('INCR', KEYS[1])
         if inside > tonumber(redis.call('GET', KEYS[2]) or '0') then
           redis.call('SET', KEYS[2], inside)
         end
         return inside",
    )
});

/// A store that rejects writes with an epoch older than the newest it accepted, and logs
/// every write with whether it was accepted.
static FENCED_WRITE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        "local accepted = tonumber(ARGV[1]) >= tonumber(redis.call('GET', KEYS[1]) or '0')
         if accepted then redis.call('SET', KEYS[1], ARGV[1]) end
         redis.call('RPUSH', KEYS[2], ARGV[2] .. (accepted and ' 1' or ' 0'))
         return accepted and 1 or 0",
    )
});

/// This machine's wall clock in microseconds (comparable across its processes).
fn wall_us() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(now.as_micros()).unwrap_or(u64::MAX)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["count", url, lock, counter, sections] => {
            let locker = Locker::redis(url)?;
            let mut counter = Counter::redis(url, counter).await;
            for _ in 0..sections.parse::<u32>()? {
                let guard = locker
                    .lock(*lock)
                    .wait(Duration::from_secs(60))
                    .acquire()
                    .await?;
                counter.unsafe_increment().await;
                if !guard.release().await? {
                    return Err("lock lost during a critical section".into());
                }
            }
            Ok(())
        }
        ["attr-count", url, lock, counter, sections] => {
            let locker = Locker::redis(url)?;
            let mut counter = Counter::redis(url, counter).await;
            for _ in 0..sections.parse::<u32>()? {
                locked_increment(&locker, lock, &mut counter).await?;
            }
            Ok(())
        }
        ["redlock-count", counter_url, lock, counter, sections] => {
            let locker = Locker::from_env()?;
            let mut counter = Counter::redis(counter_url, counter).await;
            for _ in 0..sections.parse::<u32>()? {
                let guard = locker
                    .lock(*lock)
                    .ttl(Duration::from_secs(1))
                    .wait(Duration::from_secs(60))
                    .acquire()
                    .await?;
                counter.unsafe_increment().await;
                match guard.release().await {
                    Ok(true) => {}
                    Ok(false) => eprintln!("lock reported lost during a critical section"),
                    // Servers are being killed: the keys expire with their TTL.
                    Err(error) => eprintln!("release failed: {error}"),
                }
            }
            Ok(())
        }
        ["cluster-count", locks, sections] => {
            let locker = Locker::from_env()?;
            let urls: Vec<String> = std::env::var("REDIS_CLUSTER_URLS")?
                .split(',')
                .map(str::to_owned)
                .collect();
            let locks: Vec<&str> = locks.split(',').collect();
            let mut counters = Vec::new();
            for lock in &locks {
                counters.push(Counter::cluster(&urls, &format!("counter:{{{lock}}}")).await);
            }
            for section in 0..sections.parse::<usize>()? {
                let index = section % locks.len();
                let guard = locker
                    .lock(locks[index])
                    .wait(Duration::from_secs(60))
                    .acquire()
                    .await?;
                counters[index].unsafe_increment().await;
                if !guard.release().await? {
                    return Err("lock lost during a critical section".into());
                }
            }
            Ok(())
        }
        ["semaphore", url, name, permits, tasks, sections, tracker] => {
            let locker = Locker::redis(url)?;
            let (permits, sections): (u32, u32) = (permits.parse()?, sections.parse()?);
            let tracker = lock_tests_integration::raw_connection(tracker).await;
            let mut running = tokio::task::JoinSet::new();
            for _ in 0..tasks.parse::<u32>()? {
                let (locker, name, mut tracker) = (locker.clone(), name.to_string(), tracker.clone());
                running.spawn(async move {
                    for _ in 0..sections {
                        let guard = locker
                            .semaphore(name.as_str(), permits)
                            .wait(Duration::from_secs(60))
                            .acquire()
                            .await?;
                        let _: u64 = COUNT_IN.key("inside").key("most").invoke_async(&mut tracker).await?;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        let _: i64 = redis::cmd("DECR").arg("inside").query_async(&mut tracker).await?;
                        if !guard.release().await? {
                            return Err::<(), Box<dyn std::error::Error + Send + Sync>>(
                                "permit lost while held".into(),
                            );
                        }
                    }
                    Ok(())
                });
            }
            while let Some(done) = running.join_next().await {
                done?.map_err(|error| error.to_string())?;
            }
            Ok(())
        }
        ["sem-hold", url, name, permits, ttl_ms] => {
            let locker = Locker::redis(url)?;
            let _guard = locker
                .semaphore(*name, permits.parse()?)
                .ttl(Duration::from_millis(ttl_ms.parse()?))
                .auto_renew()
                .acquire()
                .await?;
            println!("ACQUIRED");
            std::future::pending::<()>().await;
            Ok(())
        }
        ["leader", url, election, ttl_ms, store] => {
            let locker = Locker::redis(url)?;
            let ttl = Duration::from_millis(ttl_ms.parse()?);
            let mut store = lock_tests_integration::raw_connection(store).await;
            let mut commands = tokio::io::BufReader::new(tokio::io::stdin()).lines();
            let mut stdin_open = true;
            loop {
                let leadership = locker.leader(*election).ttl(ttl).await?;
                let epoch = leadership.epoch();
                println!("ELECTED {epoch} {}", wall_us());
                let lost = leadership.lost();
                tokio::pin!(lost);
                loop {
                    tokio::select! {
                        () = &mut lost => {
                            println!("LOST {epoch} {}", wall_us());
                            break;
                        }
                        command = commands.next_line(), if stdin_open => {
                            let command = command?;
                            stdin_open = command.is_some();
                            if command.as_deref() == Some("resign") {
                                let at = wall_us();
                                leadership.resign().await?;
                                println!("RESIGNED {epoch} {at}");
                                break;
                            }
                        }
                        () = tokio::time::sleep(Duration::from_millis(5)) => {
                            // The check every act of leadership makes, then the act.
                            let sent = wall_us();
                            let left = leadership.remaining();
                            if left.is_zero() {
                                println!("LOST {epoch} {}", wall_us());
                                break;
                            }
                            let until = sent + u64::try_from(left.as_micros())?;
                            let entry = format!("{epoch} {} {sent} {until}", std::process::id());
                            // A write cut short by a pause (its response timed out) is
                            // just not logged; the store decides on those it sees.
                            let written: redis::RedisResult<i64> = FENCED_WRITE
                                .key("epoch")
                                .key("writes")
                                .arg(epoch)
                                .arg(entry)
                                .invoke_async(&mut store)
                                .await;
                            if let Err(error) = written {
                                eprintln!("store write failed: {error}");
                            }
                        }
                    }
                }
            }
        }
        ["serve"] => {
            let server = lock_runtime::testing::RedisServer::start()?;
            println!("PID {}", server.pid().ok_or("no pid")?);
            std::future::pending::<()>().await;
            drop(server);
            Ok(())
        }
        ["abandon", url, lock, waiters, poll_ms] => {
            let locker = Locker::builder()
                .poll_interval(Duration::from_millis(poll_ms.parse()?))
                .redis(url)?;
            for _ in 0..waiters.parse::<u32>()? {
                let request = locker.lock(*lock).wait(Duration::from_secs(600));
                tokio::spawn(request.acquire());
            }
            std::future::pending::<()>().await;
            Ok(())
        }
        [mode @ ("hold" | "wait"), url, lock, ttl_ms] => {
            let locker = Locker::redis(url)?;
            let wait = if *mode == "wait" { 60 } else { 0 };
            let _guard = locker
                .lock(*lock)
                .ttl(Duration::from_millis(ttl_ms.parse()?))
                .wait(Duration::from_secs(wait))
                .acquire()
                .await?;
            println!("ACQUIRED");
            std::future::pending::<()>().await;
            Ok(())
        }
        _ => Err(
            "usage: lock-worker count|attr-count|redlock-count <url> <lock> <counter> <n> | hold|wait <url> <lock> <ttl-ms> | abandon <url> <lock> <waiters> <poll-ms>"
                .into(),
        ),
    }
}
