//! The other vaults a mount's views read from. Each gets a client with the
//! mount's identity (one credential, one token for all), a value cache in
//! the mount's byte budget, a core that resolves and refreshes that vault's
//! views, and metrics labelled with that vault; the mount's own core routes
//! those views to it (see `fs::view`). Nothing here is shown in the root.
//!
//! At start each vault is listed once, as the mount's own is: a vault that
//! does not answer (DNS, connection, TLS), answers 404 (no vault at that
//! URL) or refuses the identity fails the start naming the first view that
//! reads from it and the vault. A refused listing (403) is fine, as for
//! the mount's own vault: views are read by name.

use std::sync::Arc;

use tokio::runtime::Runtime;

use crate::cache::{BytePool, SecretCache};
use crate::config::{CacheConfig, MountConfig, VaultConfig};
use crate::fs::{FsCore, FsTimings};
use crate::metrics::MountMetrics;
use crate::vault::VaultError;

use super::connect::{connect_with, Connection};
use super::Error;

/// The vaults other than the mount's own that `cfg`'s views name, each
/// with the first view that names it, in the order they first appear.
fn other_vaults(cfg: &MountConfig) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for spec in &cfg.views {
        if let Some(url) = &spec.vault {
            if !out.iter().any(|(u, _)| u == url) {
                out.push((url.clone(), spec.shown()));
            }
        }
    }
    out
}

/// Connects to and lists every other vault of `cfg`'s views, and builds
/// their cores over caches in `pool`, one per vault; their metrics are
/// added to the mount's.
pub fn connect_view_vaults(
    rt: &Runtime,
    cfg: &MountConfig,
    conn: &Connection,
    cache_cfg: &CacheConfig,
    pool: &Arc<BytePool>,
    metrics: &Arc<MountMetrics>,
) -> Result<Vec<Arc<FsCore>>, Error> {
    let mut out = Vec::new();
    for (url, view) in other_vaults(cfg) {
        let vault_cfg = VaultConfig {
            url: url.clone(),
            ..cfg.vault.clone()
        };
        let vault_metrics = metrics.add_vault(&url);
        let vault = connect_with(&vault_cfg, &conn.identity, &conn.transport, &vault_metrics)?;
        let listing = match rt
            .block_on(super::mount::first_listing(&vault, cfg.cache.fetch_timeout))
        {
            Ok(l) => Some(l),
            Err(e @ VaultError::Forbidden { .. }) => {
                tracing::warn!(vault = %url, view = %view, "{e}; the views of this vault are read by name");
                None
            }
            Err(source) => {
                return Err(Error::ViewVault {
                    view,
                    vault: url,
                    source,
                })
            }
        };
        let cache = SecretCache::in_pool(vault, cache_cfg.clone(), pool);
        let core = FsCore::with_metrics(
            cache,
            cfg.owner,
            FsTimings::default(),
            Arc::clone(&vault_metrics),
        );
        vault_metrics
            .lists
            .store(listing.is_some(), std::sync::atomic::Ordering::Relaxed);
        if let Some(l) = listing {
            core.set_listing(l);
            vault_metrics.refresh_cycle(true);
        }
        tracing::info!(vault = %url, view = %view, "views read from this vault too");
        out.push(core);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::views::{validate_views, RawView};
    use crate::config::MountOptions;

    #[test]
    fn other_vaults_are_taken_once_each_in_order_with_their_first_view() {
        let mut cfg = MountOptions {
            vault: Some("kv-a".into()),
            path: Some("/mnt".into()),
            ..Default::default()
        }
        .validate(true, true)
        .unwrap();
        let view = |path: &str, vault: Option<&str>| RawView {
            path: Some(path.into()),
            name: Some("db".into()),
            vault: vault.map(str::to_string),
            ..Default::default()
        };
        cfg.views = validate_views(
            vec![
                view("a", None),
                view("c1", Some("kv-c")),
                view("b1", Some("kv-b")),
                view("c2", Some("https://kv-c.vault.azure.net")),
                view("own", Some("kv-a")),
            ],
            &cfg.vault.url,
        )
        .unwrap();
        assert_eq!(
            other_vaults(&cfg),
            [
                ("https://kv-c.vault.azure.net".to_string(), "c1".to_string()),
                ("https://kv-b.vault.azure.net".to_string(), "b1".to_string()),
            ]
        );
    }

    #[test]
    fn a_mount_started_again_keeps_one_set_of_metrics_per_vault() {
        let m = MountMetrics::new(
            "/mnt",
            "https://kv-a.vault.azure.net",
            std::time::Duration::from_secs(60),
            false,
        );
        let first = m.add_vault("https://kv-b.vault.azure.net");
        let again = m.add_vault("https://kv-b.vault.azure.net");
        assert!(Arc::ptr_eq(&first, &again));
        let other = m.add_vault("https://kv-c.vault.azure.net");
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(other.mountpoint, "/mnt");
        assert_eq!(other.vault, "kv-c.vault.azure.net");
    }
}
