use std::ffi::OsStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::*;
use crate::cache::SecretCache;
use crate::config::CacheConfig;
use crate::vault::memory::MemoryVault;
use crate::vault::Vault;

/// The owner of the test mounts' files.
pub(super) fn test_owner() -> OwnerConfig {
    OwnerConfig {
        uid: 1000,
        gid: 1000,
        file_mode: 0o400,
        dir_mode: 0o500,
        allow_other: false,
    }
}

fn setup() -> (Arc<MemoryVault>, Arc<FsCore>) {
    let vault = Arc::new(MemoryVault::new());
    let cache = SecretCache::new(vault.clone() as Arc<dyn Vault>, CacheConfig::default());
    (
        vault,
        FsCore::new(cache, test_owner(), FsTimings::default()),
    )
}

#[tokio::test(start_paused = true)]
async fn lookup_gives_exact_size_and_read_gives_exact_bytes() {
    let (vault, fs) = setup();
    vault.put("db-password", b"s3cr3t\n\x00tail");
    let e = fs
        .lookup(ROOT_INO, OsStr::new("db-password"))
        .await
        .unwrap();
    assert_eq!(e.attr.size, 12);
    assert_eq!(e.attr.perm, 0o400);
    assert_eq!(e.attr.uid, 1000);
    let data = fs.read(e.attr.ino, 0, 4096).await.unwrap();
    assert_eq!(data.bytes(), b"s3cr3t\n\x00tail");
    let data = fs.read(e.attr.ino, 7, 3).await.unwrap();
    assert_eq!(data.bytes(), b"\x00ta");
    let data = fs.read(e.attr.ino, 100, 3).await.unwrap();
    assert_eq!(data.bytes(), b"");
    assert_eq!(vault.gets.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn names_that_cannot_exist_never_reach_the_vault() {
    let (vault, fs) = setup();
    for n in [".git", "a.txt", "with space", "x_y"] {
        let err = fs.lookup(ROOT_INO, OsStr::new(n)).await.unwrap_err();
        assert_eq!(err.errno(), libc::ENOENT);
    }
    assert_eq!(vault.gets.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn errors_map_to_documented_errnos() {
    let (vault, fs) = setup();
    assert_eq!(
        fs.lookup(ROOT_INO, OsStr::new("missing"))
            .await
            .unwrap_err()
            .errno(),
        libc::ENOENT
    );
    vault.put("off", b"x");
    vault.set_enabled("off", false);
    assert_eq!(
        fs.lookup(ROOT_INO, OsStr::new("off"))
            .await
            .unwrap_err()
            .errno(),
        libc::EACCES
    );
    vault.put("denied", b"x");
    vault.fail_with(VaultError::Forbidden {
        operation: "get",
        detail: "no".into(),
    });
    assert_eq!(
        fs.lookup(ROOT_INO, OsStr::new("denied"))
            .await
            .unwrap_err()
            .errno(),
        libc::EACCES
    );
    vault.fail_with(VaultError::Unavailable("down".into()));
    let fs_fast = {
        let cache = SecretCache::new(
            vault.clone() as Arc<dyn Vault>,
            CacheConfig {
                fetch_timeout: Duration::from_millis(100),
                ..Default::default()
            },
        );
        FsCore::new(cache, fs.owner, FsTimings::default())
    };
    assert_eq!(
        fs_fast
            .lookup(ROOT_INO, OsStr::new("denied"))
            .await
            .unwrap_err()
            .errno(),
        libc::EIO
    );
}

#[tokio::test(start_paused = true)]
async fn a_rotation_binds_a_new_inode_and_the_old_one_keeps_its_version() {
    let (vault, fs) = setup();
    vault.put("rot", b"old-value");
    let old = fs.lookup(ROOT_INO, OsStr::new("rot")).await.unwrap();
    vault.put("rot", b"new");
    fs.cache()
        .fetch_latest(&SecretName::parse("rot").unwrap())
        .await
        .unwrap();
    let new = fs.lookup(ROOT_INO, OsStr::new("rot")).await.unwrap();
    assert_ne!(old.attr.ino, new.attr.ino);
    assert_eq!(new.attr.size, 3);
    assert_eq!(
        fs.read(old.attr.ino, 0, 100).await.unwrap().bytes(),
        b"old-value"
    );
    assert_eq!(fs.read(new.attr.ino, 0, 100).await.unwrap().bytes(), b"new");
    fs.forget(old.attr.ino, 1);
    assert_eq!(fs.getattr(old.attr.ino).unwrap_err().errno(), libc::ENOENT);
    assert!(fs.getattr(new.attr.ino).is_ok());
}

#[tokio::test(start_paused = true)]
async fn directory_lists_every_name_once_sorted() {
    let (vault, fs) = setup();
    for i in (0..60).rev() {
        vault.put(&format!("s{i:02}"), b"v");
    }
    let fh = fs.opendir(ROOT_INO).await.unwrap();
    let entries = fs.readdir(fh, 0).unwrap();
    let names: Vec<_> = entries.iter().skip(2).map(|e| e.name.clone()).collect();
    let expected: Vec<_> = (0..60).map(|i| format!("s{i:02}")).collect();
    assert_eq!(names, expected);
    assert_eq!(
        vault.gets.load(Ordering::SeqCst),
        0,
        "listing fetches no values"
    );
    fs.releasedir(fh);
}

#[tokio::test(start_paused = true)]
async fn xattrs_carry_metadata() {
    let (vault, fs) = setup();
    let v = vault.put("meta", b"x");
    let e = fs.lookup(ROOT_INO, OsStr::new("meta")).await.unwrap();
    let list = fs.listxattr(e.attr.ino).unwrap();
    let list = String::from_utf8(list).unwrap();
    assert!(list.contains("user.akv.version\0"));
    assert!(list.contains("user.akv.updated\0"));
    assert!(
        !list.contains("user.akv.expires"),
        "absent attributes are not listed"
    );
    assert_eq!(
        fs.getxattr(e.attr.ino, OsStr::new("user.akv.version"))
            .unwrap(),
        v.as_str().as_bytes()
    );
    assert_eq!(
        fs.getxattr(e.attr.ino, OsStr::new("user.akv.expires"))
            .unwrap_err()
            .errno(),
        libc::ENODATA
    );
    assert_eq!(
        fs.getxattr(e.attr.ino, OsStr::new("security.selinux"))
            .unwrap_err()
            .errno(),
        libc::ENODATA
    );
}

#[tokio::test(start_paused = true)]
async fn directory_entries_are_built_once_per_listing() {
    let (vault, fs) = setup();
    vault.put("a", b"1");
    let first = fs.opendir(ROOT_INO).await.unwrap();
    let second = fs.opendir(ROOT_INO).await.unwrap();
    assert!(Arc::ptr_eq(
        &fs.readdir(first, 0).unwrap(),
        &fs.readdir(second, 0).unwrap()
    ));
    vault.put("b", b"2");
    fs.reload_listing().await.unwrap();
    let third = fs.opendir(ROOT_INO).await.unwrap();
    let names: Vec<_> = fs
        .readdir(third, 0)
        .unwrap()
        .iter()
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(names, vec![".", "..", "a", "b"]);
    // The stream opened before the change keeps its snapshot.
    assert_eq!(fs.readdir(first, 0).unwrap().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn lookups_of_unlisted_names_are_budgeted_per_mount() {
    let vault = Arc::new(MemoryVault::new());
    vault.put("real", b"v");
    let cache = SecretCache::new(
        vault.clone() as Arc<dyn Vault>,
        CacheConfig {
            max_cold_lookups_per_10s: 5,
            ..Default::default()
        },
    );
    let owner = OwnerConfig {
        uid: 0,
        gid: 0,
        file_mode: 0o400,
        dir_mode: 0o500,
        allow_other: false,
    };
    let fs = FsCore::new(cache, owner, FsTimings::default());
    fs.reload_listing().await.unwrap();
    // A local user flooding random names.
    for i in 0..200 {
        let err = fs
            .lookup(ROOT_INO, OsStr::new(&format!("guess-{i}")))
            .await
            .unwrap_err();
        assert_eq!(err.errno(), libc::ENOENT);
    }
    assert_eq!(vault.gets.load(Ordering::SeqCst), 5);
    assert_eq!(fs.cache().stats.lookups_refused.load(Ordering::SeqCst), 195);
    // A listed name is not held back by the flood.
    fs.lookup(ROOT_INO, OsStr::new("real")).await.unwrap();
    assert_eq!(vault.gets.load(Ordering::SeqCst), 6);
}
