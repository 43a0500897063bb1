//! The node scheduler over the in-memory vault, with tokio's paused clock.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::config::CacheConfig;
use crate::fs::fixture::{memory_fs, read};
use crate::fs::FsCore;
use crate::notice::{
    delay_ms_for, window_secs, ChannelSource, Notice, NoticeNode, NoticeStats, SecretMeta,
    SourceEvent,
};
use crate::refresh::{KernelCache, RefreshConfig, Refresher};
use crate::secret::SecretName;
use crate::vault::memory::MemoryVault;
use crate::vault::VaultError;

struct NoKernel;
impl KernelCache for NoKernel {
    fn forget_name(&self, _: &str) {}
    fn forget_inode(&self, _: u64) {}
}

const NODE: &str = "node-7";
const T0: i64 = 1_700_000_000;

struct Node {
    vault: Arc<MemoryVault>,
    core: Arc<FsCore>,
    refresher: Arc<Refresher>,
    tx: mpsc::Sender<SourceEvent>,
    stats: Arc<NoticeStats>,
    _stop: watch::Sender<bool>,
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A node caching `names` (each at version time T0), following a channel.
async fn node(names: &[&str]) -> Node {
    let (vault, core) = memory_fs(CacheConfig {
        fetch_timeout: Duration::from_secs(5),
        ..Default::default()
    });
    let refresher = Refresher::new(core.clone(), Arc::new(NoKernel), RefreshConfig::default());
    for n in names {
        vault.put(n, b"v1");
        vault.set_updated(n, T0);
        assert_eq!(read(&core, n).await.unwrap(), b"v1");
    }
    let (tx, rx) = mpsc::channel(8);
    let (stop, stop_rx) = watch::channel(false);
    let follower = NoticeNode::new(
        refresher.clone(),
        NODE.into(),
        Duration::from_secs(6 * 3600),
    );
    let stats = follower.stats();
    tokio::spawn(follower.run(Box::new(ChannelSource(rx)), stop_rx));
    Node {
        vault,
        core,
        refresher,
        tx,
        stats,
        _stop: stop,
    }
}

/// A notice from a fleet of 1,000 at 400 per 10 s (W = 83 s for one change).
fn notice(secrets: &[(&str, i64, bool)]) -> SourceEvent {
    SourceEvent::Notice(Notice {
        vault: "memory://test".into(),
        fleet_size: 1000,
        limit_per_10s: 400,
        secrets: secrets
            .iter()
            .map(|(n, u, e)| {
                (
                    SecretName::parse(n).unwrap(),
                    SecretMeta {
                        updated: *u,
                        enabled: *e,
                        content_type: None,
                        expires: None,
                    },
                )
            })
            .collect(),
        // Long after every version time: W is sized for one change.
        listed_at: T0 + 10_000,
        heartbeat: now_unix(),
    })
}

fn gets(n: &Node) -> u64 {
    n.vault.gets.load(Ordering::SeqCst)
}

async fn wait(secs: f64) {
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
}

#[tokio::test(start_paused = true)]
async fn a_rotation_is_fetched_once_at_the_nodes_own_delay() {
    let n = node(&["db", "other"]).await;
    n.vault.put("db", b"v2");
    n.vault.set_updated("db", T0 + 100);
    let w = window_secs(1000, 1, 400);
    assert_eq!(w, 83);
    let delay = delay_ms_for(NODE, "db", T0 + 100, w) as f64 / 1000.0;
    let before = gets(&n);
    n.tx.send(notice(&[("db", T0 + 100, true), ("other", T0, true)]))
        .await
        .unwrap();
    wait(delay - 0.5).await;
    assert_eq!(gets(&n), before, "no GET before the node's delay");
    assert_eq!(
        read(&n.core, "db").await.unwrap(),
        b"v1",
        "the cached value serves meanwhile"
    );
    wait(1.0).await;
    assert_eq!(gets(&n), before + 1);
    assert_eq!(read(&n.core, "db").await.unwrap(), b"v2");
    // The same notice again, or a heartbeat rewrite: nothing more.
    n.tx.send(notice(&[("db", T0 + 100, true), ("other", T0, true)]))
        .await
        .unwrap();
    wait(200.0).await;
    assert_eq!(gets(&n), before + 1);
    assert_eq!(n.stats.get(&n.stats.changed), 1);
}

#[tokio::test(start_paused = true)]
async fn notices_that_do_not_advance_cost_nothing() {
    let n = node(&["db"]).await;
    let before = gets(&n);
    // Same version time, an older one, and a secret this node never read.
    n.tx.send(notice(&[("db", T0, true), ("unread", T0 + 50, true)]))
        .await
        .unwrap();
    n.tx.send(notice(&[("db", T0 - 100, true)])).await.unwrap();
    wait(600.0).await;
    assert_eq!(gets(&n), before);
    assert_eq!(n.stats.get(&n.stats.scheduled), 0);
}

#[tokio::test(start_paused = true)]
async fn a_forged_notice_costs_one_get_and_changes_nothing() {
    let n = node(&["db"]).await;
    let before = gets(&n);
    // The vault has not changed; the notice claims it has, and that the
    // secret is disabled, then that it is gone.
    n.tx.send(notice(&[("db", T0 + 999, true)])).await.unwrap();
    wait(90.0).await;
    n.tx.send(notice(&[("db", T0 + 999, true)])).await.unwrap();
    wait(90.0).await;
    assert_eq!(gets(&n), before + 1);
    assert_eq!(read(&n.core, "db").await.unwrap(), b"v1");
    n.tx.send(notice(&[("db", T0 + 1000, false)]))
        .await
        .unwrap();
    wait(90.0).await;
    assert_eq!(gets(&n), before + 2);
    assert_eq!(
        read(&n.core, "db").await.unwrap(),
        b"v1",
        "a notice cannot revoke"
    );
    n.tx.send(notice(&[])).await.unwrap();
    wait(90.0).await;
    assert_eq!(gets(&n), before + 3);
    assert_eq!(
        read(&n.core, "db").await.unwrap(),
        b"v1",
        "a notice cannot delete"
    );
    assert_eq!(n.stats.get(&n.stats.revoked), 0);
}

#[tokio::test(start_paused = true)]
async fn a_disable_or_delete_the_vault_confirms_revokes() {
    let n = node(&["db", "gone"]).await;
    n.vault.set_enabled("db", false);
    n.vault.delete("gone");
    n.tx.send(notice(&[("db", T0 + 5, false)])).await.unwrap();
    wait(90.0).await;
    assert!(read(&n.core, "db").await.is_err(), "disabled: removed");
    assert!(read(&n.core, "gone").await.is_err(), "deleted: removed");
    assert_eq!(n.stats.get(&n.stats.revoked), 2);
}

#[tokio::test(start_paused = true)]
async fn a_429_is_retried_after_retry_after() {
    let n = node(&["db"]).await;
    n.vault.put("db", b"v2");
    n.vault.set_updated("db", T0 + 100);
    n.vault.fail_gets_with(Some(VaultError::Throttled {
        retry_after: Some(Duration::from_secs(30)),
    }));
    let delay = delay_ms_for(NODE, "db", T0 + 100, window_secs(1000, 1, 400)) as f64 / 1000.0;
    let before = gets(&n);
    n.tx.send(notice(&[("db", T0 + 100, true)])).await.unwrap();
    wait(delay + 0.5).await;
    assert_eq!(gets(&n), before + 1);
    n.vault.fail_gets_with(None);
    wait(29.0).await;
    assert_eq!(gets(&n), before + 1, "no retry before Retry-After");
    wait(2.5).await;
    assert_eq!(gets(&n), before + 2);
    assert_eq!(read(&n.core, "db").await.unwrap(), b"v2");
    assert_eq!(n.stats.get(&n.stats.throttled), 1);
}

#[tokio::test(start_paused = true)]
async fn polling_slows_while_notices_are_live_and_resumes_when_they_are_not() {
    let n = node(&["db"]).await;
    let normal = n.refresher.interval();
    assert_eq!(n.refresher.poll_interval(), normal);
    n.tx.send(notice(&[("db", T0, true)])).await.unwrap();
    wait(0.1).await;
    assert_eq!(n.refresher.poll_interval(), Duration::from_secs(6 * 3600));
    // The watch drops: back to the mount's own interval.
    n.tx.send(SourceEvent::Down("connection reset".into()))
        .await
        .unwrap();
    wait(0.1).await;
    assert_eq!(n.refresher.poll_interval(), normal);
    // A notice for another vault is not trusted for liveness.
    let SourceEvent::Notice(mut other) = notice(&[]) else {
        unreachable!()
    };
    other.vault = "https://elsewhere.vault.azure.net".into();
    n.tx.send(SourceEvent::Notice(other)).await.unwrap();
    wait(0.1).await;
    assert_eq!(n.refresher.poll_interval(), normal);
    // Live again, then no heartbeat for 15 minutes: stale.
    n.tx.send(notice(&[("db", T0, true)])).await.unwrap();
    wait(0.1).await;
    assert_eq!(n.stats.get(&n.stats.live), 1);
    wait(15.0 * 60.0 + 1.0).await;
    assert_eq!(n.refresher.poll_interval(), normal);
    assert_eq!(n.stats.get(&n.stats.live), 0);
    // A notice whose heartbeat is already old does not count as live.
    let SourceEvent::Notice(mut old) = notice(&[("db", T0, true)]) else {
        unreachable!()
    };
    old.heartbeat = now_unix() - 3600;
    n.tx.send(SourceEvent::Notice(old)).await.unwrap();
    wait(0.1).await;
    assert_eq!(n.refresher.poll_interval(), normal);
}

#[tokio::test(start_paused = true)]
async fn a_change_inside_an_open_window_widens_it() {
    let n = node(&["a", "b"]).await;
    n.tx.send(notice(&[("a", T0, true), ("b", T0, true)]))
        .await
        .unwrap();
    wait(1.0).await;
    n.tx.send(notice(&[("a", T0 + 10, true), ("b", T0, true)]))
        .await
        .unwrap();
    wait(1.0).await;
    assert_eq!(n.stats.get(&n.stats.window), 83);
    // b changes while a's 83 s are still running: both count.
    n.tx.send(notice(&[("a", T0 + 10, true), ("b", T0 + 20, true)]))
        .await
        .unwrap();
    wait(1.0).await;
    assert_eq!(n.stats.get(&n.stats.window), 166);
    // Once both windows have closed, a lone change is one again.
    wait(200.0).await;
    n.tx.send(notice(&[("a", T0 + 30, true), ("b", T0 + 20, true)]))
        .await
        .unwrap();
    wait(1.0).await;
    assert_eq!(n.stats.get(&n.stats.window), 83);
}
