//! Node agents: the real node-side code (cache, filesystem core, refresher, notice follower)
//! without FUSE, one per simulated node, all in this process.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use akvfs::sim::MountConfig;
use akvfs::sim::MountMetrics;
use akvfs::sim::SecretCache;
use akvfs::sim::SecretName;
use akvfs::sim::{begin_start, NoticeNode, NoticeSource, NoticeStats};
use akvfs::sim::{FsCore, FsTimings, ROOT_INO};
use akvfs::sim::{KernelCache, Refresher};
use akvfs::sim::{PageCount, Vault};
use tokio::sync::watch;

struct NoKernel;
impl KernelCache for NoKernel {
    fn forget_name(&self, _: &str) {}
    fn forget_inode(&self, _: u64) {}
}

pub struct Agent {
    pub core: Arc<FsCore>,
    pub stats: Arc<NoticeStats>,
    /// Whether it listed the vault at start (no usable notice then).
    pub listed: bool,
    stop: watch::Sender<bool>,
}

/// The vault client agents share (one connection pool; each call is still one call).
pub fn connect(cfg: &MountConfig) -> Result<Arc<dyn Vault>, String> {
    let metrics = MountMetrics::new("/fleet", &cfg.vault.url, Duration::from_secs(60), false);
    akvfs::sim::connect(&cfg.vault, &cfg.auth, &metrics)
        .map(|c| c.vault)
        .map_err(|e| e.to_string())
}

impl Agent {
    /// Starts a node as a mount that follows notices starts: the listing from the notice
    /// (one LIST only when there is no usable notice), its first vault calls paced, then the
    /// refresher and the notice follower; then reads each of `hot` once (a cold GET each), as
    /// its pods would, one after another.
    pub async fn start(
        name: String,
        vault: Arc<dyn Vault>,
        cfg: &MountConfig,
        source: Box<dyn NoticeSource>,
        hot: &[String],
    ) -> Result<Agent, String> {
        let start = begin_start(vault, &name, source, Duration::from_secs(5)).await;
        let vault = start.vault;
        let cache = SecretCache::new(Arc::clone(&vault), cfg.cache.clone());
        let metrics = MountMetrics::new(&name, &cfg.vault.url, Duration::from_secs(60), false);
        let core = FsCore::with_metrics(cache, cfg.owner, FsTimings::default(), metrics);
        let listed = start.listing.is_none();
        let listing = match start.listing {
            Some(l) => l,
            None => {
                retry(|| async {
                    vault
                        .list(&PageCount::default())
                        .await
                        .map_err(|e| e.to_string())
                })
                .await?
            }
        };
        core.set_listing(listing);
        let refresher = Refresher::new(Arc::clone(&core), Arc::new(NoKernel), cfg.refresh);
        let (stop, stop_rx) = watch::channel(false);
        let live_poll = cfg
            .notice
            .as_ref()
            .map(|n| n.live_poll)
            .unwrap_or(Duration::from_secs(6 * 3600));
        let follower = NoticeNode::new(Arc::clone(&refresher), name.clone(), live_poll);
        let stats = follower.stats();
        tokio::spawn(refresher.run(stop_rx.clone()));
        tokio::spawn(follower.run(start.source, stop_rx));
        let agent = Agent {
            core,
            stats,
            listed,
            stop,
        };
        for h in hot {
            retry(|| agent.read(h)).await?;
        }
        Ok(agent)
    }

    /// Reads a secret through the filesystem core (from the cache when it holds it).
    pub async fn read(&self, name: &str) -> Result<Vec<u8>, String> {
        let e = self
            .core
            .lookup(ROOT_INO, OsStr::new(name))
            .await
            .map_err(|e| format!("lookup {name}: {e:?}"))?;
        let data = self
            .core
            .read(e.attr.ino, 0, 1 << 16)
            .await
            .map_err(|e| format!("read {name}: {e:?}"))?;
        Ok(data.bytes().to_vec())
    }

    /// The version the node would serve now, from memory only (no call).
    pub fn cached_version(&self, name: &str) -> Option<String> {
        let n = SecretName::parse(name)?;
        self.core
            .cache()
            .cached_latest(&n)
            .map(|e| e.props.version.to_string())
    }

    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

/// Retries a start-up call that hit the vault's limit (as a starting mount does).
async fn retry<T, F, Fut>(mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut last = String::new();
    for attempt in 0..8u32 {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(
            500 * (1 << attempt.min(4)) + fastrand::u64(0..1000),
        ))
        .await;
    }
    Err(last)
}
