//! The notice as the in-process agents see it: the relay (`fleet/procs.rs`) follows the real
//! ConfigMap in the Kubernetes API fake and publishes each notice here; each agent has a watch
//! stream of its own, and a scenario can make every stream miss events, then end them with
//! `410 Gone` (each agent then re-reads the current content).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use akvfs::sim::{lock, Notice, NoticeSource, SourceEvent};
use tokio::sync::broadcast;

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
