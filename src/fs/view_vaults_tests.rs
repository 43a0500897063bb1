//! Views of several vaults without FUSE: each view is resolved by the core
//! of its own vault, and each core tracks, revokes and invalidates only its
//! own vault's views, even for the same object name.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::cache::{BytePool, SecretCache};
use crate::config::views::{validate_views, RawView};
use crate::config::{CacheConfig, ViewRoot, ViewSpec};
use crate::fs::{FsCore, FsTimings, ROOT_INO};
use crate::secret::SecretName;
use crate::vault::memory::MemoryVault;
use crate::vault::{Vault, VaultError};

const A: &str = "https://a.vault.azure.net";
const B: &str = "https://b.vault.azure.net";

fn core(vault: &Arc<MemoryVault>, pool: &Arc<BytePool>) -> Arc<FsCore> {
    let cfg = CacheConfig::default();
    let cache = SecretCache::in_pool(vault.clone() as Arc<dyn Vault>, cfg, pool);
    FsCore::new(
        cache,
        crate::fs::fixture::owner(1000, 1000),
        FsTimings::default(),
    )
}

fn specs() -> Vec<ViewSpec> {
    let view = |path: &str, name: &str, vault: Option<&str>| RawView {
        path: Some(path.into()),
        name: Some(name.into()),
        vault: vault.map(str::to_string),
        ..Default::default()
    };
    validate_views(
        vec![
            view("a", "db", None),
            view("b", "db", Some(B)),
            view("only-b", "only-b", Some(B)),
        ],
        A,
    )
    .unwrap()
}

fn name(s: &str) -> SecretName {
    SecretName::parse(s).unwrap()
}

#[tokio::test(start_paused = true)]
async fn each_view_is_served_and_revoked_by_its_own_vault() {
    let (va, vb) = (
        Arc::new(MemoryVault::with_url(A)),
        Arc::new(MemoryVault::with_url(B)),
    );
    va.put("db", b"from-a");
    vb.put("db", b"from-b");
    vb.put("only-b", b"b-only");
    let pool = BytePool::new(CacheConfig::default().max_bytes);
    let (ca, cb) = (core(&va, &pool), core(&vb, &pool));
    ca.set_views_with(specs(), ViewRoot::Views, vec![Arc::clone(&cb)]);
    ca.check_views().await.unwrap();

    let la = ca.lookup(ROOT_INO, OsStr::new("a")).await.unwrap();
    let lb = ca.lookup(ROOT_INO, OsStr::new("b")).await.unwrap();
    ca.lookup(ROOT_INO, OsStr::new("only-b")).await.unwrap();
    assert_eq!(
        ca.read(la.attr.ino, 0, 100).await.unwrap().bytes(),
        b"from-a"
    );
    assert_eq!(
        ca.read(lb.attr.ino, 0, 100).await.unwrap().bytes(),
        b"from-b"
    );
    assert_eq!(va.gets.load(Ordering::SeqCst), 1);
    assert_eq!(vb.gets.load(Ordering::SeqCst), 2);
    // Each vault's values are in its own cache, in one byte budget.
    assert_eq!(ca.cache().len(), 1);
    assert_eq!(cb.cache().len(), 2);
    assert_eq!(pool.used(), ca.cache().bytes() + cb.cache().bytes());

    // Each core tracks its own vault's views only.
    let keys = |c: &FsCore| -> HashSet<String> {
        c.bound_names().into_keys().map(|n| n.to_string()).collect()
    };
    assert_eq!(keys(&ca), HashSet::from(["db".to_string()]));
    assert_eq!(
        keys(&cb),
        HashSet::from(["db".to_string(), "only-b".to_string()])
    );
    assert_eq!(ca.view_dentries_of("db"), [(ROOT_INO, "a".to_string())]);
    assert_eq!(cb.view_dentries_of("db"), [(ROOT_INO, "b".to_string())]);

    // Revoking db in B (B's refresher) fails B's view closed, naming B,
    // and leaves A's view of the same name alone.
    let refused = VaultError::Forbidden {
        operation: "get",
        detail: "ForbiddenByRbac".into(),
    };
    let inos = cb.revoke_inodes(&name("db"), &refused);
    assert!(inos.contains(&lb.attr.ino) && !inos.contains(&la.attr.ino));
    let e = ca.read(lb.attr.ino, 0, 100).await.err().unwrap();
    assert_eq!(e.errno(), libc::EACCES);
    assert!(e.to_string().contains(B), "{e}");
    assert_eq!(
        ca.read(la.attr.ino, 0, 100).await.unwrap().bytes(),
        b"from-a"
    );
    // And A's revocation leaves B's views alone.
    let inos = ca.revoke_inodes(&name("only-b"), &refused);
    assert!(inos.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_view_of_a_vault_no_core_serves_is_never_read_from_another() {
    let va = Arc::new(MemoryVault::with_url(A));
    va.put("db", b"from-a");
    let pool = BytePool::new(CacheConfig::default().max_bytes);
    let ca = core(&va, &pool);
    ca.set_views_with(specs(), ViewRoot::Views, Vec::new());
    let e = ca.lookup(ROOT_INO, OsStr::new("b")).await.err().unwrap();
    assert_eq!(e.errno(), libc::EIO);
    assert_eq!(va.gets.load(Ordering::SeqCst), 0);
    // The start-up check fails on that view (after reading A's own).
    let (view, e) = ca.check_views().await.unwrap_err();
    assert_eq!((view.as_str(), e.errno()), ("b", libc::EIO));
}
