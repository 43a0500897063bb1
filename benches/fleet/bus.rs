//! The notice object and its watchers, in process: a stand-in for one ConfigMap on an API
//! server (current content, a watch stream per node, `410 Gone` forcing a re-read), and two
//! watchers that elect a leader on a lease, list the vault and publish metadata.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use akvfs::sim::{Notice, NoticeSource, SecretMeta, SourceEvent};
use akvfs::sim::{PageCount, Vault};
use tokio::sync::broadcast;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Clone)]
enum BusEvent {
    Notice(Notice),
    /// Every open watch fails with 410 Gone: watchers get the object again.
    Gone,
}

/// One notice object and its watch streams.
pub struct Bus {
    current: Mutex<Option<Notice>>,
    tx: broadcast::Sender<BusEvent>,
    /// Writes made to the object.
    pub writes: AtomicU64,
    /// While set, writes reach no watch stream (events lost in a compacted gap).
    dropping: AtomicBool,
}

impl Bus {
    pub fn new() -> Arc<Bus> {
        let (tx, _) = broadcast::channel(64);
        Arc::new(Bus {
            current: Mutex::new(None),
            tx,
            writes: AtomicU64::new(0),
            dropping: AtomicBool::new(false),
        })
    }

    /// Writes the object; watchers see it.
    pub fn publish(&self, n: Notice) {
        *lock(&self.current) = Some(n.clone());
        self.writes.fetch_add(1, Ordering::Relaxed);
        if !self.dropping.load(Ordering::Relaxed) {
            let _ = self.tx.send(BusEvent::Notice(n));
        }
    }

    /// While `on`, writes change the object but every watch stream misses them.
    pub fn drop_events(&self, on: bool) {
        self.dropping.store(on, Ordering::Relaxed);
    }

    /// Ends every watch with 410 Gone.
    pub fn expire(&self) {
        let _ = self.tx.send(BusEvent::Gone);
    }

    pub fn current(&self) -> Option<Notice> {
        lock(&self.current).clone()
    }

    /// A node's source: the object's content first, then its changes.
    pub fn source(self: &Arc<Self>) -> Box<dyn NoticeSource> {
        Box::new(BusSource {
            bus: Arc::clone(self),
            rx: self.tx.subscribe(),
            reread: true,
        })
    }
}

struct BusSource {
    bus: Arc<Bus>,
    rx: broadcast::Receiver<BusEvent>,
    reread: bool,
}

#[async_trait::async_trait]
impl NoticeSource for BusSource {
    async fn next(&mut self) -> SourceEvent {
        loop {
            if std::mem::take(&mut self.reread) {
                return match self.bus.current() {
                    Some(n) => SourceEvent::Notice(n),
                    None => SourceEvent::Missing,
                };
            }
            match self.rx.recv().await {
                Ok(BusEvent::Notice(n)) => return SourceEvent::Notice(n),
                Ok(BusEvent::Gone) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    self.reread = true
                }
                Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    }
}

/// A lease: one holder at a time, taken over when not renewed for `ttl`.
pub struct Lease {
    holder: Mutex<Option<(usize, Instant)>>,
    ttl: Duration,
}

impl Lease {
    pub fn new(ttl: Duration) -> Arc<Lease> {
        Arc::new(Lease {
            holder: Mutex::new(None),
            ttl,
        })
    }

    /// Takes or renews the lease for `who`; whether `who` holds it now.
    fn acquire(&self, who: usize) -> bool {
        let mut h = lock(&self.holder);
        let now = Instant::now();
        match *h {
            Some((w, at)) if w != who && now.duration_since(at) < self.ttl => false,
            _ => {
                *h = Some((who, now));
                true
            }
        }
    }

    pub fn holder(&self) -> Option<usize> {
        lock(&self.holder).map(|(w, _)| w)
    }
}

/// One watcher replica.
pub struct Watcher {
    pub id: usize,
    pub killed: AtomicBool,
    /// List pages this replica fetched.
    pub pages: AtomicU64,
}

pub struct WatcherCfg {
    pub fleet_size: u32,
    pub limit_per_10s: u32,
    pub interval: Duration,
}

impl Watcher {
    /// Runs until killed: renews the lease every interval; as leader, lists the vault and
    /// writes the object when the metadata changed or the heartbeat is 5 min old.
    pub async fn run(
        self: Arc<Self>,
        vault: Arc<dyn Vault>,
        bus: Arc<Bus>,
        lease: Arc<Lease>,
        cfg: WatcherCfg,
    ) {
        let mut last_heartbeat = 0i64;
        while !self.killed.load(Ordering::Relaxed) {
            if lease.acquire(self.id) {
                let pages = PageCount::default();
                if let Ok(list) = vault.list(&pages).await {
                    let now = unix_now();
                    let secrets: BTreeMap<_, _> = list
                        .into_iter()
                        .filter(|s| !s.managed)
                        .map(|s| {
                            (
                                s.name,
                                SecretMeta {
                                    updated: s.updated.unwrap_or(0),
                                    enabled: s.enabled,
                                    content_type: s.content_type,
                                    expires: None,
                                },
                            )
                        })
                        .collect();
                    let old = bus.current();
                    let changed = old
                        .as_ref()
                        .is_none_or(|o| o.secrets != secrets || o.fleet_size != cfg.fleet_size);
                    if changed || now - last_heartbeat >= 300 {
                        last_heartbeat = now;
                        if !self.killed.load(Ordering::Relaxed) {
                            bus.publish(Notice {
                                vault: vault.url().trim_end_matches('/').to_string(),
                                fleet_size: cfg.fleet_size,
                                limit_per_10s: cfg.limit_per_10s,
                                secrets,
                                listed_at: now,
                                heartbeat: now,
                            });
                        }
                    }
                }
                self.pages
                    .fetch_add(u64::from(pages.get()), Ordering::Relaxed);
            }
            tokio::time::sleep(cfg.interval).await;
        }
    }
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
