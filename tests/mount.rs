//! The mount, end to end: real FUSE mounts of the emulator over HTTPS with
//! the real SDK authentication flows.

mod common;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use common::*;

fn errno_of(r: std::io::Result<impl Sized>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

#[test]
fn lists_60_secrets_with_exact_bytes_and_sizes() {
    let mut secrets: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..57 {
        secrets.insert(
            format!("secret-{i:02}"),
            format!("value {i}: {}", "x".repeat(i * 7)),
        );
    }
    secrets.insert("trailing-newline".into(), "line\n".into());
    secrets.insert("unicode".into(), "päss wörd ✓ 🔑".into());
    secrets.insert("largest".into(), "L".repeat(25 * 1024));
    let seed: Vec<(&str, &str)> = secrets
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let emu = emulator_with(&seed);
    let m = Mount::new(&emu, &[]);

    let mut names: Vec<String> = std::fs::read_dir(&m.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, secrets.keys().cloned().collect::<Vec<_>>());

    for (name, value) in &secrets {
        let meta = std::fs::metadata(m.file(name)).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.len(), value.len() as u64, "size of {name}");
        assert_eq!(meta.mode() & 0o7777, 0o400);
        assert_eq!(m.read(name).unwrap(), value.as_bytes(), "bytes of {name}");
    }
    // Reading in small pieces gives the same bytes.
    let mut f = std::fs::File::open(m.file("largest")).unwrap();
    let mut buf = [0u8; 1000];
    f.seek(SeekFrom::Start(25 * 1024 - 10)).unwrap();
    let n = f.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], &[b'L'; 10]);
    // Each value was fetched once, and the listing needed pages.
    let counts = emu.counts();
    assert_eq!(counts.get("get_secret"), secrets.len() as u64);
    assert!(
        counts.get("list_secrets") >= 3,
        "60 secrets span 3 pages of 25"
    );
}

#[test]
fn directory_and_owner_attributes() {
    let emu = emulator_with(&[("a", "1")]);
    let m = Mount::new(
        &emu,
        &[
            "--uid",
            "1234",
            "--gid",
            "2345",
            "--file-mode",
            "0440",
            "--dir-mode",
            "0550",
        ],
    );
    let root = std::fs::metadata(&m.path).unwrap();
    assert!(root.is_dir());
    assert_eq!(root.mode() & 0o7777, 0o550);
    assert_eq!((root.uid(), root.gid()), (1234, 2345));
    let f = std::fs::metadata(m.file("a")).unwrap();
    assert_eq!(f.mode() & 0o7777, 0o440);
    assert_eq!((f.uid(), f.gid()), (1234, 2345));
    let updated = emu.secret_updated("a").expect("emulator knows the secret");
    assert_eq!(f.mtime(), updated);
    assert_eq!(f.ctime(), updated);
}

#[test]
fn extended_attributes_carry_metadata() {
    let emu = emulator_with(&[]);
    let version = emu.set_secret_full(
        "tagged",
        "v",
        Some("text/plain"),
        &[("env", "prod"), ("owner", "team-a")],
    );
    let m = Mount::new(&emu, &[]);
    let path = m.file("tagged");
    let mut names: Vec<String> = xattr::list(&path)
        .unwrap()
        .map(|n| n.into_string().unwrap())
        .collect();
    names.sort();
    for want in [
        "user.akv.version",
        "user.akv.id",
        "user.akv.content_type",
        "user.akv.created",
        "user.akv.updated",
        "user.akv.tag.env",
        "user.akv.tag.owner",
    ] {
        assert!(
            names.contains(&want.to_string()),
            "{want} missing from {names:?}"
        );
    }
    let get = |n: &str| String::from_utf8(xattr::get(&path, n).unwrap().unwrap()).unwrap();
    assert_eq!(get("user.akv.version"), version);
    assert!(get("user.akv.id").ends_with(&format!("/secrets/tagged/{version}")));
    assert_eq!(get("user.akv.content_type"), "text/plain");
    assert_eq!(get("user.akv.tag.env"), "prod");
    assert!(get("user.akv.updated").ends_with('Z'));
    assert!(xattr::get(&path, "user.akv.expires").unwrap().is_none());
    assert_eq!(
        String::from_utf8(xattr::get(&m.path, "user.akv.vault").unwrap().unwrap()).unwrap(),
        emu.info().vault_url
    );
}

#[test]
fn every_write_is_refused_with_erofs() {
    let emu = emulator_with(&[("a", "1")]);
    let m = Mount::new(&emu, &[]);
    let erofs = libc::EROFS;
    assert_eq!(errno_of(std::fs::write(m.file("new"), b"x")), erofs);
    assert_eq!(
        errno_of(std::fs::OpenOptions::new().write(true).open(m.file("a"))),
        erofs
    );
    assert_eq!(errno_of(std::fs::remove_file(m.file("a"))), erofs);
    assert_eq!(errno_of(std::fs::rename(m.file("a"), m.file("b"))), erofs);
    assert_eq!(errno_of(std::fs::create_dir(m.file("d"))), erofs);
    assert_eq!(
        errno_of(std::fs::hard_link(m.file("a"), m.file("c"))),
        erofs
    );
    assert_eq!(
        errno_of(std::os::unix::fs::symlink("a", m.file("s"))),
        erofs
    );
    assert_eq!(
        errno_of(std::fs::set_permissions(
            m.file("a"),
            std::fs::Permissions::from_mode(0o777)
        )),
        erofs
    );
    assert_eq!(errno_of(xattr::set(m.file("a"), "user.x", b"y")), erofs);
    assert_eq!(m.read("a").unwrap(), b"1", "nothing changed");
}

#[test]
fn unknown_names_are_enoent_and_lookups_are_case_exact() {
    let emu = emulator_with(&[("db-password", "pw")]);
    let m = Mount::new(&emu, &[]);
    for name in [
        "missing",
        "DB-PASSWORD",
        "Db-Password",
        ".hidden",
        "db-password.txt",
    ] {
        let err = m.read(name).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{name}");
    }
    assert_eq!(m.read("db-password").unwrap(), b"pw");
}

#[test]
fn forbidden_and_disabled_secrets_are_eacces() {
    let emu = emulator_with(&[("open", "1"), ("locked", "2"), ("off", "3")]);
    emu.deny_secret(&emu.info().client_id, "locked");
    emu.set_enabled("off", false);
    let m = Mount::new(&emu, &[]);
    assert_eq!(errno_of(m.read("locked")), libc::EACCES);
    assert_eq!(errno_of(m.read("off")), libc::EACCES);
    assert_eq!(m.read("open").unwrap(), b"1");
    let log = m.log();
    assert!(
        log.contains("locked") && log.contains("403"),
        "cause is logged:\n{log}"
    );
    assert!(log.contains("disabled"), "cause is logged:\n{log}");
}

#[test]
fn an_unreachable_vault_with_nothing_cached_is_eio_within_the_fetch_timeout() {
    let emu = emulator_with(&[("cached", "c"), ("cold", "d")]);
    let m = Mount::new(&emu, &["--fetch-timeout", "2s"]);
    assert_eq!(m.read("cached").unwrap(), b"c");
    emu.inject_fault(Fault::status(503));
    let start = std::time::Instant::now();
    assert_eq!(errno_of(m.read("cold")), libc::EIO);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "failed instead of hanging"
    );
    assert_eq!(
        m.read("cached").unwrap(),
        b"c",
        "cached values keep serving"
    );
    emu.clear_faults();
    assert_eq!(m.read("cold").unwrap(), b"d");
}

#[test]
fn concurrent_cold_readers_cause_one_get() {
    let emu = emulator_with(&[("hot", "value")]);
    emu.inject_fault(Fault::latency(Duration::from_millis(300)));
    let m = Mount::new(&emu, &[]);
    emu.reset_counts();
    let path = m.file("hot");
    let readers: Vec<_> = (0..64)
        .map(|_| {
            let p = path.clone();
            std::thread::spawn(move || std::fs::read(p).unwrap())
        })
        .collect();
    for r in readers {
        assert_eq!(r.join().unwrap(), b"value");
    }
    assert_eq!(emu.counts().get("get_secret"), 1);
}

fn run_as_nobody(path: &std::path::Path) -> std::process::Output {
    Command::new("cat")
        .arg(path)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap()
}

#[test]
fn mode_bits_are_enforced_for_other_users() {
    let emu = emulator_with(&[("s", "v")]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // Without --allow-other, other users cannot enter the mount at all.
    let p1 = dir.path().join("private");
    std::fs::create_dir(&p1).unwrap();
    let m1 = Mount::start_at(&emu, &wi_env(&emu), &[], &p1);
    assert!(!run_as_nobody(&m1.file("s")).status.success());
    // With --allow-other, the mode bits decide: 0400 root-owned refuses nobody...
    let p2 = dir.path().join("shared");
    std::fs::create_dir(&p2).unwrap();
    let m2 = Mount::start_at(
        &emu,
        &wi_env(&emu),
        &["--allow-other", "--dir-mode", "0555"],
        &p2,
    );
    let out = run_as_nobody(&m2.file("s"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
    // ...and 0444 lets it read.
    let p3 = dir.path().join("world");
    std::fs::create_dir(&p3).unwrap();
    let m3 = Mount::start_at(
        &emu,
        &wi_env(&emu),
        &["--allow-other", "--dir-mode", "0555", "--file-mode", "0444"],
        &p3,
    );
    let out = run_as_nobody(&m3.file("s"));
    assert!(out.status.success());
    assert_eq!(out.stdout, b"v");
    drop((m1, m2, m3));
}

#[test]
fn sigterm_unmounts_cleanly() {
    let emu = emulator_with(&[("a", "1")]);
    let mut m = Mount::new(&emu, &[]);
    assert_eq!(m.read("a").unwrap(), b"1");
    let status = m.stop_with(libc::SIGTERM).unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(!is_mounted(&m.path));
    let log = m.log();
    assert!(log.contains("SIGTERM"), "{log}");
}

#[test]
fn sigint_unmounts_cleanly() {
    let emu = emulator_with(&[("a", "1")]);
    let mut m = Mount::new(&emu, &[]);
    let status = m.stop_with(libc::SIGINT).unwrap();
    assert!(status.success());
    assert!(!is_mounted(&m.path));
}

#[test]
fn a_stale_mount_from_a_killed_daemon_is_recovered() {
    let emu = emulator_with(&[("a", "1")]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mnt");
    std::fs::create_dir(&path).unwrap();
    let mut first = Mount::start_at(&emu, &wi_env(&emu), &[], &path);
    first.stop_with(libc::SIGKILL);
    let err = std::fs::read_dir(&path).unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(libc::ENOTCONN),
        "the killed daemon left a stale mount"
    );
    let second = Mount::start_at(&emu, &wi_env(&emu), &[], &path);
    assert_eq!(second.read("a").unwrap(), b"1");
    assert!(second.log().contains("stale mount"));
}

#[test]
fn background_mode_returns_once_serving_and_unmount_stops_it() {
    let emu = emulator_with(&[("a", "1")]);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = akvfs(&wi_env(&emu));
    cmd.arg("mount")
        .arg(&emu.info().vault_url)
        .arg(dir.path())
        .args(conn_args(&emu));
    let out = run(cmd);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(is_mounted(dir.path()), "serving when the command returns");
    assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"1");
    let out = run({
        let mut c = akvfs(&[]);
        c.arg("unmount").arg(dir.path());
        c
    });
    assert!(out.status.success(), "{}", out.stderr);
    assert!(wait_until(Duration::from_secs(10), || !is_mounted(
        dir.path()
    )));
}

#[test]
fn trace_logs_of_a_whole_session_hold_no_secret_value() {
    let values: Vec<(String, String)> =
        (0..5).map(|i| (format!("s{i}"), marker("VALUE"))).collect();
    let emu = emulator_with_owned(&values);
    let mut env = wi_env(&emu);
    // Every crate at trace: akvfs, the Azure SDK, fuser.
    env.push(("AKVFS_LOG".into(), "trace,akvfs=trace".into()));
    let mut m = Mount::with_env(&emu, &env, &[]);
    for (k, v) in &values {
        assert_eq!(m.read(k).unwrap(), v.as_bytes());
        let _ = xattr::list(m.file(k)).unwrap().count();
    }
    let _ = m.read("missing");
    emu.set_enabled("s1", false);
    m.stop_with(libc::SIGTERM);
    let log = m.log();
    assert!(log.contains("TRACE"), "trace level was on");
    assert!(log.len() > 2000, "the session logged plenty");
    for (_, v) in &values {
        assert!(!log.contains(v.as_str()), "a secret value reached the log");
        // Nor any long fragment of it.
        assert!(
            !log.contains(&v[6..22]),
            "a fragment of a secret value reached the log"
        );
    }
}

#[test]
fn the_daemon_locks_its_memory_and_cannot_dump_core() {
    let emu = emulator_with(&[("a", "1")]);
    let m = Mount::new(&emu, &[]);
    m.read("a").unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", m.pid())).unwrap();
    let locked: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(locked > 0, "memory is locked");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", m.pid())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(core.split_whitespace().nth(4), Some("0"), "{core}");
    assert_eq!(core.split_whitespace().nth(5), Some("0"), "{core}");
}
