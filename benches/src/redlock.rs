//! Redlock: workload 1 (ours, 1 task, acquire+release on fresh keys) on 5 servers, against
//! the machine's floor for it, measured in the same interleaved rounds: PINGs to all five
//! servers at once, awaited until a quorum (3) answered, then PINGs to all five awaited
//! from all. That is what an acquire that returns on a quorum and a release that reaches
//! every server must wait for, at the least. A second floor sends ours' own commands
//! instead of PINGs (`SET NX PX` with `PTTL`, then the release script), without the
//! library: the part of the gap that is the servers' work rather than the client's.

use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use lock_runtime::Locker;
use redis::aio::ConnectionManager;

use crate::report::Figure;
use crate::sides::Client;
use crate::stats::{Samples, median, micros};
use crate::workloads::{Bench, connection, pairs, ratios};

/// PINGs to every server of `fan_out` at once, awaited until `answers` answered (the rest
/// complete in the background: their replies are read before the next command's).
async fn ping_all(fan_out: &mut [ConnectionManager], answers: usize) {
    let mut pending: FuturesUnordered<_> = fan_out
        .iter_mut()
        .map(|redis| async move {
            let _: String = redis::cmd("PING").query_async(redis).await.expect("PING");
        })
        .collect();
    for _ in 0..answers {
        pending.next().await;
    }
    // The stragglers are left to finish on their own connections.
    drop(pending);
}

/// The release script of a Redlock server, as lock-runtime's `release_free.lua`.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end \
    redis.call('DEL', KEYS[1]) redis.call('PUBLISH', KEYS[2], '') return 1";

/// Ours' commands without the library, to every server of `fan_out` at once, awaited until
/// `answers` answered: the acquire's `SET NX PX` and `PTTL` (a pipeline), or the release
/// script (`EVALSHA`, loaded beforehand).
async fn commands_all(fan_out: &mut [ConnectionManager], answers: usize, key: &str, acquire: bool) {
    let release = redis::Script::new(RELEASE);
    let mut pending: FuturesUnordered<_> = fan_out
        .iter_mut()
        .map(|redis| {
            let release = &release;
            async move {
                if acquire {
                    let mut pipe = redis::pipe();
                    pipe.cmd("SET")
                        .arg(key)
                        .arg("owner")
                        .arg("NX")
                        .arg("PX")
                        .arg(30_000);
                    pipe.cmd("PTTL").arg(key);
                    let _: (redis::Value, i64) = pipe.query_async(redis).await.expect("SET");
                } else {
                    let mut release = release.key(key);
                    release.key(format!("{key}:released")).arg("owner");
                    let _: i64 = release.invoke_async(redis).await.expect("EVALSHA");
                }
            }
        })
        .collect();
    for _ in 0..answers {
        pending.next().await;
    }
}

/// `ops` samples of: PING to all, awaited from all; PING to all, awaited from a quorum,
/// then PING to all, awaited from all; the same with ours' commands.
async fn floors(fan_out: &mut [ConnectionManager], ops: u64) -> [Samples; 3] {
    let quorum = fan_out.len() / 2 + 1;
    let (mut one, mut both, mut commands) = (Vec::new(), Vec::new(), Vec::new());
    for index in 0..ops {
        let started = Instant::now();
        ping_all(fan_out, fan_out.len()).await;
        one.push(started.elapsed());
        let started = Instant::now();
        ping_all(fan_out, quorum).await;
        ping_all(fan_out, fan_out.len()).await;
        both.push(started.elapsed());
        let key = format!("bench:rlfloor:{index}");
        let started = Instant::now();
        commands_all(fan_out, quorum, &key, true).await;
        commands_all(fan_out, fan_out.len(), &key, false).await;
        commands.push(started.elapsed());
    }
    [
        Samples::new(one),
        Samples::new(both),
        Samples::new(commands),
    ]
}

/// Workload 7, Redlock: 1 server, 5 servers and the floor, in rotating order per round.
pub(crate) async fn redlock(bench: &Bench) -> Vec<Figure> {
    let servers = bench.redlock_urls.len();
    let single = Client::Ours(Locker::redis(&bench.url).expect("a valid URL"));
    let quorum = Locker::redlock(&bench.redlock_urls).expect("valid URLs");
    quorum.ping().await.expect("ping");
    let quorum = Client::Ours(quorum);
    pairs(&single, "bench:warmup", 500).await;
    pairs(&quorum, "bench:warmup", 500).await;
    let mut fan_out = Vec::new();
    for url in &bench.redlock_urls {
        fan_out.push(connection(url).await);
    }
    floors(&mut fan_out, 200).await;
    let per_round = bench.per_round(bench.ops / 2);
    let (mut one, mut five, mut five_p99) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ping_all_p50, mut floor, mut commands) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..bench.rounds {
        for offset in 0..3 {
            match (round + offset) % 3 {
                0 => {
                    let samples = pairs(&single, &format!("bench:rl1:{round}"), per_round).await;
                    one.push(micros(samples.percentile(50.0)));
                }
                1 => {
                    let samples = pairs(&quorum, &format!("bench:rl5:{round}"), per_round).await;
                    five.push(micros(samples.percentile(50.0)));
                    five_p99.push(micros(samples.percentile(99.0)));
                }
                _ => {
                    let [all, both, same] = floors(&mut fan_out, per_round).await;
                    ping_all_p50.push(micros(all.percentile(50.0)));
                    floor.push(micros(both.percentile(50.0)));
                    commands.push(micros(same.percentile(50.0)));
                }
            }
        }
    }
    vec![
        Figure::rounds("redlock", "1 server p50", &one, "us").per_rtt(bench.rtt),
        Figure::rounds("redlock", format!("{servers} servers p50"), &five, "us").per_rtt(bench.rtt),
        Figure::rounds("redlock", format!("{servers} servers p99"), &five_p99, "us")
            .per_rtt(bench.rtt),
        Figure::rounds(
            "redlock",
            format!("PING to {servers} at once, all answered, p50"),
            &ping_all_p50,
            "us",
        )
        .per_rtt(bench.rtt),
        Figure::rounds(
            "redlock",
            "floor: PING all until a quorum, then all, p50",
            &floor,
            "us",
        )
        .per_rtt(bench.rtt),
        Figure::rounds(
            "redlock",
            format!("{servers} servers / floor (p50)"),
            &ratios(&five, &floor),
            "ratio",
        )
        .at_most(1.15),
        Figure::rounds(
            "redlock",
            "ours' commands without the library, p50",
            &commands,
            "us",
        )
        .per_rtt(bench.rtt),
        Figure::rounds(
            "redlock",
            format!("{servers} servers / ours' commands (p50)"),
            &ratios(&five, &commands),
            "ratio",
        ),
        Figure::rounds(
            "redlock",
            format!("{servers} servers / one PING to all (p50)"),
            &ratios(&five, &ping_all_p50),
            "ratio",
        ),
        Figure::rounds(
            "redlock",
            format!("{servers} / 1 servers (p50)"),
            &ratios(&five, &one),
            "ratio",
        ),
        Figure::new(
            "redlock",
            "PING to all at once / PING (p50)",
            median(&ping_all_p50) / bench.rtt,
            "ratio",
        ),
    ]
}
