//! Keys in the refresh cycle, over the in-memory vault: a rotation makes
//! the kernel drop the key's names and lookups give the new version; a
//! deleted, disabled or refused key fails closed, open inodes included.

use std::ffi::OsStr;
use std::time::Duration;

use super::tests::setup;
use super::*;
use crate::fs::special::KEYS_INO;
use crate::objects::jwk::PublicJwk;
use crate::vault::memory::MemoryVault;

fn rsa(fill: u8) -> PublicJwk {
    PublicJwk {
        kty: "RSA".into(),
        n: Some(vec![fill; 256]),
        e: Some(vec![1, 0, 1]),
        ..Default::default()
    }
}

async fn read_key(core: &FsCore, file: &str) -> Result<(u64, Vec<u8>), i32> {
    let e = core
        .lookup(KEYS_INO, OsStr::new(file))
        .await
        .map_err(|e| e.errno())?;
    let data = core
        .read(e.attr.ino, 0, 1 << 20)
        .await
        .map_err(|e| e.errno())?;
    Ok((e.attr.ino, data.bytes().to_vec()))
}

async fn reread(core: &FsCore, ino: u64) -> Result<Vec<u8>, i32> {
    let data = core.read(ino, 0, 1 << 20).await.map_err(|e| e.errno())?;
    Ok(data.bytes().to_vec())
}

fn cfg() -> RefreshConfig {
    RefreshConfig {
        max_unverified: Duration::from_secs(3600),
        ..Default::default()
    }
}

fn forgot(names: &std::sync::Mutex<Vec<String>>, name: &str) -> bool {
    names.lock().unwrap().iter().any(|n| n == name)
}

#[tokio::test]
async fn a_rotated_key_is_dropped_from_the_kernel_and_served_anew() {
    let s = setup(cfg());
    let vault: &MemoryVault = &s.vault;
    vault.put_key("signing", rsa(0xc5));
    let (old_ino, old) = read_key(&s.core, "signing.pem").await.unwrap();

    let report = s.refresher.cycle().await;
    assert!(report.changed.is_empty(), "{report:?}");
    assert_eq!(report.gets, 1, "one GET per key in use and cycle");

    vault.put_key("signing", rsa(0xc7));
    let report = s.refresher.cycle().await;
    assert_eq!(report.changed, [".keys/signing"]);
    assert!(forgot(&s.kernel.names, "signing"));
    let (new_ino, new) = read_key(&s.core, "signing.pem").await.unwrap();
    assert_ne!(new, old);
    assert_ne!(new_ino, old_ino);
    // The inode bound to the old version keeps it.
    assert_eq!(reread(&s.core, old_ino).await.unwrap(), old);
    let report = s.refresher.cycle().await;
    assert!(report.changed.is_empty(), "{report:?}");
}

#[tokio::test]
async fn deleted_disabled_and_refused_keys_fail_closed() {
    let s = setup(cfg());
    let vault: &MemoryVault = &s.vault;
    vault.put_key("gone", rsa(0xc5));
    vault.put_key("kept", rsa(0xc9));
    let (gone_ino, _) = read_key(&s.core, "gone.jwk").await.unwrap();
    let (kept_ino, kept) = read_key(&s.core, "kept.jwk").await.unwrap();

    vault.delete_key("gone");
    let report = s.refresher.cycle().await;
    assert_eq!(report.revoked, [".keys/gone"]);
    assert!(s.kernel.inodes.lock().unwrap().contains(&gone_ino));
    assert_eq!(reread(&s.core, gone_ino).await, Err(libc::ENOENT));
    assert_eq!(
        read_key(&s.core, "gone.jwk").await.err(),
        Some(libc::ENOENT)
    );
    assert_eq!(reread(&s.core, kept_ino).await.unwrap(), kept);

    // A vault that refuses every GET now (a lost keys/get).
    vault.fail_with(VaultError::Forbidden {
        operation: "keys/get",
        detail: "ForbiddenByRbac".into(),
    });
    let report = s.refresher.cycle().await;
    assert_eq!(report.revoked, [".keys/kept"]);
    assert_eq!(reread(&s.core, kept_ino).await, Err(libc::EACCES));
}

#[tokio::test(start_paused = true)]
async fn an_outage_serves_keys_until_max_stale_then_fails_closed() {
    let s = setup(RefreshConfig {
        max_stale: Duration::from_secs(60),
        ..cfg()
    });
    s.vault.put_key("signing", rsa(0xc5));
    let (ino, bytes) = read_key(&s.core, "signing.pem").await.unwrap();
    s.vault.fail_with(VaultError::Unavailable("down".into()));
    let report = s.refresher.cycle().await;
    assert!(
        report.error.is_some() && report.revoked.is_empty(),
        "{report:?}"
    );
    assert_eq!(reread(&s.core, ino).await.unwrap(), bytes);
    tokio::time::advance(Duration::from_secs(61)).await;
    let report = s.refresher.cycle().await;
    assert!(
        report.revoked.contains(&".keys/signing".to_string()),
        "{report:?}"
    );
    assert!(reread(&s.core, ino).await.is_err());
}
