//! Rotation without restart, revocation, outages and upstream call budgets,
//! through real mounts. Assertions are on bytes and on the emulator's call
//! counts; time only bounds the waiting, generously.

mod common;

use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(30);

fn read_str(m: &Mount, name: &str) -> String {
    String::from_utf8_lossy(&m.read(name).unwrap_or_default()).into_owned()
}

#[test]
fn a_rotated_secret_shows_up_without_restart_and_an_open_file_keeps_its_version() {
    let old = format!("old-{}", "o".repeat(5000));
    let emu = emulator_with(&[("db", &old)]);
    let m = Mount::new(&emu, &["--refresh-interval", "1s"]);
    assert_eq!(read_str(&m, "db"), old);

    // A reader that opened the old version and read part of it.
    let mut f = std::fs::File::open(m.file("db")).unwrap();
    let mut first = vec![0u8; 100];
    f.read_exact(&mut first).unwrap();

    emu.set_secret("db", "new");
    assert!(
        wait_until(WAIT, || read_str(&m, "db") == "new"),
        "rotation became visible"
    );
    assert_eq!(std::fs::metadata(m.file("db")).unwrap().len(), 3);

    // The open file still reads the rest of the old version, at its size.
    let mut rest = Vec::new();
    f.read_to_end(&mut rest).unwrap();
    first.extend_from_slice(&rest);
    assert_eq!(first, old.as_bytes());
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut again = Vec::new();
    f.read_to_end(&mut again).unwrap();
    assert_eq!(again, old.as_bytes());
    assert!(m.log().contains("refreshed"));
}

#[test]
fn new_and_deleted_secrets_appear_and_disappear() {
    let emu = emulator_with(&[("stays", "1"), ("goes", "2")]);
    let m = Mount::new(&emu, &["--refresh-interval", "1s"]);
    assert_eq!(read_str(&m, "goes"), "2");
    emu.set_secret("arrives", "3");
    emu.delete_secret("goes");
    let names = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&m.path)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert!(
        wait_until(WAIT, || names() == ["arrives", "stays"]),
        "{:?}",
        names()
    );
    assert_eq!(
        m.read("goes").unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
    assert_eq!(read_str(&m, "arrives"), "3");
}

#[test]
fn revocation_fails_closed() {
    let emu = emulator_with(&[("disabled", "1"), ("denied", "2"), ("fine", "3")]);
    // A per-secret deny leaves the listing unchanged: only the readability
    // check (every --max-unverified) can see it.
    let m = Mount::new(
        &emu,
        &["--refresh-interval", "1s", "--max-unverified", "2s"],
    );
    for n in ["disabled", "denied", "fine"] {
        m.read(n).unwrap();
    }
    // A descriptor opened before the revocation.
    let held = std::fs::File::open(m.file("denied")).unwrap();
    emu.set_enabled("disabled", false);
    emu.deny_secret(&emu.info().client_id, "denied");
    let eacces = |n: &str| m.read(n).err().and_then(|e| e.raw_os_error()) == Some(libc::EACCES);
    assert!(
        wait_until(WAIT, || eacces("disabled")),
        "disabled secret no longer served"
    );
    assert!(
        wait_until(WAIT, || eacces("denied")),
        "revoked permission no longer served"
    );
    assert_eq!(read_str(&m, "fine"), "3");
    assert!(m.log().contains("removing the cached value"));
    // Its cached pages were dropped: it cannot read the revoked value either.
    let mut buf = [0u8; 8];
    let r = std::os::unix::fs::FileExt::read_at(&held, &mut buf, 0);
    assert_eq!(r.err().and_then(|e| e.raw_os_error()), Some(libc::EACCES));
}

#[test]
fn an_outage_serves_cached_bytes_and_recovers_without_a_storm() {
    let secrets: Vec<(String, String)> = (0..20).map(|i| (format!("s{i}"), marker("v"))).collect();
    let emu = emulator_with_owned(&secrets);
    let m = Mount::new(&emu, &["--refresh-interval", "1s", "--fetch-timeout", "2s"]);
    for (k, v) in &secrets {
        assert_eq!(read_str(&m, k), *v);
    }
    emu.inject_fault(Fault::status(503));
    emu.reset_counts();
    std::thread::sleep(Duration::from_secs(5));
    for (k, v) in &secrets {
        assert_eq!(read_str(&m, k), *v, "cached bytes during the outage");
    }
    let c = emu.counts();
    let during = c.get("faulted") + c.vault_requests();
    // About one failed list call per interval (1s, jittered up to 10% shorter), not a retry per secret.
    assert!(during <= 8, "{during} calls in a 5 s outage");
    emu.clear_faults();
    emu.set_secret("s0", "after-outage");
    assert!(
        wait_until(WAIT, || read_str(&m, "s0") == "after-outage"),
        "recovered"
    );
}

#[test]
fn retry_after_is_honoured() {
    let emu = emulator_with(&[("a", "1")]);
    let m = Mount::new(&emu, &["--refresh-interval", "1s"]);
    m.read("a").unwrap();
    emu.inject_fault(Fault::throttled(Some(6)).times(1));
    emu.reset_counts();
    std::thread::sleep(Duration::from_secs(4));
    // The throttled call, and nothing more while the vault asked us to wait.
    let c = emu.counts();
    assert_eq!(
        (c.get("faulted"), c.get("list_secrets")),
        (1, 0),
        "{:?}",
        c.nonzero()
    );
}

#[test]
fn hot_unchanged_secrets_cost_list_pages_only() {
    let secrets: Vec<(String, String)> = (0..100)
        .map(|i| (format!("hot-{i:03}"), format!("v{i}")))
        .collect();
    let emu = emulator_with_owned(&secrets);
    // Secrets read in the second they were written cost one extra GET each
    // (a same-second rotation could hide behind an equal `updated`); a large
    // budget lets that settle in one cycle.
    let m = Mount::new(
        &emu,
        &["--refresh-interval", "1s", "--max-requests-per-10s", "1000"],
    );
    for (k, _) in &secrets {
        m.read(k).unwrap();
    }
    // Secrets fetched in the second they were written are settled by one
    // more GET in a later cycle; on a loaded machine cycles can lag, so wait
    // (generously) for a window of several cycles with no GET at all, rather
    // than assume one window is enough.
    let mut last = None;
    for _ in 0..10 {
        emu.reset_counts();
        std::thread::sleep(Duration::from_millis(3500));
        let c = emu.counts();
        let (gets, lists) = (c.get("get_secret"), c.get("list_secrets"));
        if gets == 0 {
            // At least one whole listing of 4 pages in the window (a window
            // may cut a listing at either end).
            assert!(lists >= 4, "the refresher kept listing: {lists} pages");
            return;
        }
        last = Some((gets, lists));
    }
    panic!("unchanged secrets kept costing GETs: {last:?} (gets, list pages) in the last window");
}

#[test]
fn the_request_budget_bounds_the_refresher() {
    let secrets: Vec<(String, String)> = (0..250)
        .map(|i| (format!("b{i:03}"), "v".to_string()))
        .collect();
    let emu = emulator_with_owned(&secrets);
    let _m = Mount::new(
        &emu,
        &["--refresh-interval", "1s", "--max-requests-per-10s", "5"],
    );
    emu.reset_counts();
    std::thread::sleep(Duration::from_secs(10));
    // 10 pages per listing, but never more than 5 calls in a 10 s window
    // (+5 for a window that straddles the start of the measurement).
    assert!(
        emu.counts().vault_requests() <= 10,
        "{:?}",
        emu.counts().nonzero()
    );
}

#[test]
fn strict_open_serves_the_same_bytes_through_the_daemon() {
    let emu = emulator_with(&[("s", "strict")]);
    let m = Mount::new(&emu, &["--strict-open", "--refresh-interval", "1s"]);
    for _ in 0..3 {
        assert_eq!(read_str(&m, "s"), "strict");
    }
    emu.set_secret("s", "rotated");
    assert!(wait_until(WAIT, || read_str(&m, "s") == "rotated"));
}
