//! Revocations a listing cannot show, revocations after memory-budget
//! eviction, hostile delays and lookup floods, through real mounts against
//! the emulator. Time only bounds the waiting, generously; assertions are on
//! bytes, errnos, page residency and the emulator's call counts.

mod common;

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::time::Duration;

use akvfs_emulator::{Operation, SecretSpec};
use common::*;

const WAIT: Duration = Duration::from_secs(40);

fn read_str(m: &Mount, name: &str) -> String {
    String::from_utf8_lossy(&m.read(name).unwrap_or_default()).into_owned()
}

fn errno(m: &Mount, name: &str) -> Option<i32> {
    m.read(name).err().and_then(|e| e.raw_os_error())
}

fn read_at_errno(f: &std::fs::File) -> Option<i32> {
    let mut buf = [0u8; 16];
    f.read_at(&mut buf, 0).err().and_then(|e| e.raw_os_error())
}

/// Secrets written in the same second as a fetch are re-read for a while
/// (a same-second rotation could hide behind an equal `updated`); wait until
/// the listing alone vouches for them, as it would for any older secret.
fn let_secrets_age() {
    std::thread::sleep(Duration::from_millis(3500));
}

#[test]
fn get_removed_with_list_kept_is_revoked_within_max_unverified() {
    let emu = emulator_with(&[("db", "pw"), ("other", "o")]);
    let m = Mount::new(
        &emu,
        &["--refresh-interval", "1s", "--max-unverified", "3s"],
    );
    assert_eq!(read_str(&m, "db"), "pw");
    assert_eq!(read_str(&m, "other"), "o");
    let held = std::fs::File::open(m.file("db")).unwrap();
    let_secrets_age();
    // The identity keeps `list` but loses `get` on every secret.
    emu.inner()
        .revoke(&emu.info().client_id, &["get"])
        .expect("permissions change");
    assert!(
        wait_until(WAIT, || errno(&m, "db") == Some(libc::EACCES)),
        "a cached value stops being served once a GET is refused"
    );
    assert!(wait_until(WAIT, || errno(&m, "other") == Some(libc::EACCES)));
    assert_eq!(read_at_errno(&held), Some(libc::EACCES));
    assert!(is_mounted(&m.path));
    assert!(!m.log().contains("pw\n"));
}

#[test]
fn a_per_secret_deny_on_an_old_secret_is_revoked_within_max_unverified() {
    let emu = emulator_with(&[("denied", "d"), ("fine", "f")]);
    let m = Mount::new(
        &emu,
        &["--refresh-interval", "1s", "--max-unverified", "3s"],
    );
    assert_eq!(read_str(&m, "denied"), "d");
    assert_eq!(read_str(&m, "fine"), "f");
    let_secrets_age();
    emu.deny_secret(&emu.info().client_id, "denied");
    assert!(wait_until(WAIT, || errno(&m, "denied") == Some(libc::EACCES)));
    assert_eq!(read_str(&m, "fine"), "f");
}

/// Whether the first page of a mapping is in the page cache.
fn resident(map: *mut libc::c_void) -> bool {
    let mut vec = [0u8; 1];
    // SAFETY: `map` is a live mapping of at least one page; `vec` has room
    // for one page's status byte.
    let rc = unsafe { libc::mincore(map, 4096, vec.as_mut_ptr()) };
    assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
    vec[0] & 1 == 1
}

#[test]
fn revocation_after_memory_budget_eviction_drops_pages_of_open_files_and_mappings() {
    let big = |c: char| c.to_string().repeat(20_000);
    let secrets: Vec<(String, String)> = ["deleted", "denied", "b1", "b2", "b3", "b4", "b5"]
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), big((b'a' + i as u8) as char)))
        .collect();
    let emu = emulator_with_owned(&secrets);
    let m = Mount::new(
        &emu,
        &[
            "--refresh-interval",
            "1s",
            "--max-unverified",
            "3s",
            "--cache-bytes",
            "64KiB",
        ],
    );
    // Descriptors and a mapping on two secrets, whole contents read...
    let mut deleted = std::fs::File::open(m.file("deleted")).unwrap();
    let mut all = Vec::new();
    deleted.read_to_end(&mut all).unwrap();
    assert_eq!(all.len(), 20_000);
    let mut denied = std::fs::File::open(m.file("denied")).unwrap();
    denied.read_to_end(&mut Vec::new()).unwrap();
    // SAFETY: mapping 20,000 bytes of an open regular file read-only and
    // shared; the mapping is only inspected with mincore and unmapped below.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            20_000,
            libc::PROT_READ,
            libc::MAP_SHARED,
            deleted.as_raw_fd(),
            0,
        )
    };
    assert_ne!(map, libc::MAP_FAILED);
    // SAFETY: the mapping is 20,000 bytes long and readable.
    let first = unsafe { *(map as *const u8) };
    assert_eq!(first, b'a');
    assert!(resident(map));
    // ...then pushed out of the 64 KiB value cache by other reads.
    for n in ["b1", "b2", "b3", "b4", "b5"] {
        assert_eq!(m.read(n).unwrap().len(), 20_000);
    }
    let_secrets_age();
    emu.delete_secret("deleted");
    emu.deny_secret(&emu.info().client_id, "denied");
    assert!(
        wait_until(WAIT, || read_at_errno(&deleted).is_some()),
        "an open descriptor stops reading deleted bytes"
    );
    assert!(!resident(map), "the mapping's pages were dropped");
    assert!(
        wait_until(WAIT, || read_at_errno(&denied) == Some(libc::EACCES)),
        "an open descriptor stops reading bytes it may no longer get"
    );
    // SAFETY: unmapping the mapping made above, never touched again.
    unsafe { libc::munmap(map, 20_000) };
    assert!(is_mounted(&m.path));
}

#[test]
fn disabling_the_latest_version_revokes_an_older_version_held_open() {
    let emu = emulator_with(&[("db", "old-value")]);
    let m = Mount::new(&emu, &["--refresh-interval", "1s"]);
    let held = std::fs::File::open(m.file("db")).unwrap();
    let mut buf = [0u8; 9];
    held.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"old-value");
    emu.set_secret("db", "new-value");
    assert!(wait_until(WAIT, || read_str(&m, "db") == "new-value"));
    // The open file keeps its version through a rotation.
    held.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"old-value");
    // The latest version is disabled; the older one stays enabled in the
    // vault, but a revoked secret is revoked in every version.
    emu.set_enabled("db", false);
    assert!(wait_until(WAIT, || errno(&m, "db") == Some(libc::EACCES)));
    assert!(
        wait_until(WAIT, || read_at_errno(&held) == Some(libc::EACCES)),
        "the descriptor on the older version no longer reads it"
    );
}

#[test]
fn max_stale_applies_per_secret_when_only_gets_fail() {
    let emu = emulator_with(&[("db", "old")]);
    let m = Mount::new(
        &emu,
        &[
            "--refresh-interval",
            "1s",
            "--max-stale",
            "3s",
            "--fetch-timeout",
            "2s",
        ],
    );
    assert_eq!(read_str(&m, "db"), "old");
    let_secrets_age();
    emu.inject_fault(Fault::status(503).for_operation(Operation::GetSecret));
    emu.set_secret("db", "new");
    // The list keeps working and shows the change; every GET fails. The old
    // value is served for a while, then no longer.
    assert!(
        wait_until(WAIT, || errno(&m, "db") == Some(libc::EIO)),
        "the old version is not served past --max-stale"
    );
    assert!(emu.counts().get("list_secrets") > 0);
    emu.clear_faults();
    assert!(wait_until(WAIT, || read_str(&m, "db") == "new"));
}

#[test]
fn a_retry_after_of_u64_max_neither_crashes_nor_stalls_the_mount() {
    let emu = emulator_with(&[("cold", "c"), ("warm", "w")]);
    let m = Mount::new(&emu, &["--refresh-interval", "1s"]);
    assert_eq!(read_str(&m, "warm"), "w");
    emu.inject_fault(Fault::throttled(Some(u64::MAX)).for_operation(Operation::GetSecret));
    // Cold fetches fail with EIO, as many times as asked; nothing panics.
    for _ in 0..5 {
        assert_eq!(errno(&m, "cold"), Some(libc::EIO));
    }
    assert_eq!(read_str(&m, "warm"), "w", "cached values keep serving");
    emu.clear_faults();
    assert!(
        wait_until(WAIT, || read_str(&m, "cold") == "c"),
        "the mount recovers once the vault does"
    );
    assert!(is_mounted(&m.path));
    assert!(!m.log().contains("internal error"), "{}", m.log());
}

#[test]
fn a_lookup_flood_of_random_names_is_budgeted() {
    let emu = emulator_with(&[("real", "r")]);
    let m = Mount::new(
        &emu,
        &[
            "--refresh-interval",
            "1s",
            "--max-cold-lookups-per-10s",
            "5",
        ],
    );
    emu.reset_counts();
    for i in 0..300 {
        let e = std::fs::metadata(m.file(&format!("guess-{i}"))).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    }
    let gets = emu.counts().get("get_secret");
    // 5 per 10 s window, plus one window's worth if the flood straddles two.
    assert!(gets <= 10, "{gets} GETs for 300 random names");
    assert_eq!(read_str(&m, "real"), "r", "listed names are not held back");
}

#[test]
fn an_expired_secret_is_served_and_warned_about_once() {
    let emu = emulator_with(&[]);
    emu.inner()
        .set_secret_with(
            "expired-cert",
            SecretSpec {
                value: "pem".into(),
                exp: Some(unix_now() - 3600),
                ..Default::default()
            },
        )
        .unwrap();
    let m = Mount::new(&emu, &["--refresh-interval", "1s"]);
    assert_eq!(read_str(&m, "expired-cert"), "pem");
    assert!(wait_until(WAIT, || m.log().contains("secret has expired")));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(m.log().matches("secret has expired").count(), 1);
}
