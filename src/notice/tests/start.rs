//! A node's start from the notice, with tokio's paused clock: its listing
//! from the notice (no LIST), its vault calls paced in a train inside the
//! start-up window and never after `2 W`, and the plain start without a
//! usable notice.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::notice::start::{begin, MAX_START_WINDOW_SECS};
use crate::notice::{window_secs, ChannelSource, Notice, SecretMeta, SourceEvent};
use crate::secret::SecretName;
use crate::vault::memory::MemoryVault;
use crate::vault::Vault;

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn notice(vault: &str, fleet: u32, limit: u32, names: &[&str]) -> Notice {
    Notice {
        vault: vault.into(),
        fleet_size: fleet,
        limit_per_10s: limit,
        secrets: names
            .iter()
            .map(|n| {
                (
                    SecretName::parse(n).unwrap(),
                    SecretMeta {
                        updated: 1_700_000_000,
                        enabled: true,
                        content_type: None,
                        expires: None,
                    },
                )
            })
            .collect(),
        listed_at: now_unix(),
        heartbeat: now_unix(),
    }
}

fn source(ev: SourceEvent) -> Box<ChannelSource> {
    let (tx, rx) = mpsc::channel(4);
    tx.try_send(ev).unwrap();
    // The sender is dropped: the source then waits for ever, as a quiet
    // watch does.
    Box::new(ChannelSource(rx))
}

fn vault(names: &[&str]) -> Arc<MemoryVault> {
    let v = Arc::new(MemoryVault::new());
    for n in names {
        v.put(n, b"v1");
    }
    v
}

#[tokio::test(start_paused = true)]
async fn a_start_from_the_notice_lists_nothing_and_paces_its_calls() {
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
    let mem = vault(&names);
    let n = notice(mem.url(), 1000, 400, &names);
    let w = window_secs(1000, 1, 400);
    let started = Instant::now();
    let mut start = begin(
        mem.clone() as Arc<dyn Vault>,
        "node-7",
        source(SourceEvent::Notice(n)),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(start.window, Some(w));
    let listing = start
        .listing
        .take()
        .expect("the listing comes from the notice");
    assert_eq!(listing.len(), names.len());
    assert!(listing
        .iter()
        .all(|s| s.enabled && s.updated == Some(1_700_000_000)));
    // The notice read at start is still there for the follower.
    assert!(matches!(start.source.next().await, SourceEvent::Notice(_)));
    // Ten reads one after another: one every W / 8, the first within W / 8.
    let gap = Duration::from_secs(w) / 8;
    let mut at = Vec::new();
    for name in names {
        let name = SecretName::parse(name).unwrap();
        start.vault.admit().await;
        start.vault.get(&name, None).await.unwrap();
        at.push(started.elapsed());
    }
    assert!(at[0] < gap, "first call at {:?}", at[0]);
    for pair in at.windows(2) {
        assert!(pair[1] - pair[0] >= gap, "{pair:?} closer than {gap:?}");
    }
    assert!(at[9] <= Duration::from_secs(2 * w), "{:?}", at[9]);
    assert_eq!(mem.gets.load(Ordering::SeqCst), 10);
    // Start-up over: calls go at once.
    tokio::time::sleep(Duration::from_secs(2 * w)).await;
    let t = Instant::now();
    start.vault.admit().await;
    assert_eq!(t.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn no_call_waits_past_twice_the_window() {
    let mem = vault(&["a"]);
    // A forged fleet size would make W days long: capped.
    let n = notice(mem.url(), 1_000_000, 1, &["a"]);
    let start = begin(
        mem.clone() as Arc<dyn Vault>,
        "node-7",
        source(SourceEvent::Notice(n)),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(start.window, Some(MAX_START_WINDOW_SECS));
    let started = Instant::now();
    let vault = start.vault;
    let calls: Vec<_> = (0..40)
        .map(|_| {
            let v = Arc::clone(&vault);
            tokio::spawn(async move {
                v.admit().await;
                Instant::now()
            })
        })
        .collect();
    for c in calls {
        let done = c.await.unwrap();
        assert!(done - started <= Duration::from_secs(2 * MAX_START_WINDOW_SECS));
    }
}

#[tokio::test(start_paused = true)]
async fn without_a_usable_notice_the_node_lists_and_is_not_paced() {
    let mem = vault(&["a"]);
    for ev in [
        SourceEvent::Down("no Kubernetes client configuration".into()),
        SourceEvent::Missing,
        SourceEvent::Notice(notice("https://other.vault.azure.net", 1000, 400, &["a"])),
        SourceEvent::Notice(Notice {
            heartbeat: now_unix() - 3600,
            ..notice(mem.url(), 1000, 400, &["a"])
        }),
    ] {
        let start = begin(
            mem.clone() as Arc<dyn Vault>,
            "node-7",
            source(ev),
            Duration::from_secs(5),
        )
        .await;
        assert!(start.listing.is_none());
        assert_eq!(start.window, None);
        let t = Instant::now();
        start.vault.admit().await;
        assert_eq!(t.elapsed(), Duration::ZERO);
    }
    // A source that says nothing: the node waits its start-up wait, no more.
    let (_tx, rx) = mpsc::channel(1);
    let t = Instant::now();
    let start = begin(
        mem.clone() as Arc<dyn Vault>,
        "node-7",
        Box::new(ChannelSource(rx)),
        Duration::from_secs(5),
    )
    .await;
    assert!(start.listing.is_none());
    assert_eq!(t.elapsed(), Duration::from_secs(5));
}
