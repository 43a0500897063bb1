//! Running as a service: the config file, SIGHUP reload, metrics and health
//! endpoints, sd_notify, and the mount(8) helper syntax used by fstab.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// The value of one sample line, matched by name and label fragments.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|f| l.contains(f)))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

fn mount_block(emu: &Emulator, path: &Path, extra: &str) -> String {
    format!(
        "[[mount]]\nvault = \"{}\"\npath = \"{}\"\nca_file = \"{}\"\ndisable_challenge_resource_verification = true\nrefresh_interval = \"1s\"\n{extra}\n",
        emu.info().vault_url,
        path.display(),
        emu.info().ca_file
    )
}

struct Service {
    child: Child,
}

impl Service {
    fn start(emu: &Emulator, config: &Path, extra: &[&str]) -> Service {
        let mut cmd = akvfs(&wi_env(emu));
        cmd.arg("run").arg("--config").arg(config).args(extra);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Service {
            child: cmd.spawn().unwrap(),
        }
    }

    fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.signal(libc::SIGTERM);
        let _ = wait_until(Duration::from_secs(20), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_config_file_serves_several_mounts_and_sighup_reloads_only_what_changed() {
    let emu = emulator_with(&[("a", "1"), ("b", "2")]);
    let dir = tempfile::tempdir().unwrap();
    let (one, two, three) = (
        dir.path().join("one"),
        dir.path().join("two"),
        dir.path().join("three"),
    );
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "{}{}",
            mount_block(&emu, &one, ""),
            mount_block(&emu, &two, "file_mode = \"0440\"")
        ),
    )
    .unwrap();
    let svc = Service::start(&emu, &config, &[]);
    assert!(
        wait_until(WAIT, || is_mounted(&one) && is_mounted(&two)),
        "both mounts serve"
    );
    assert_eq!(std::fs::read(one.join("a")).unwrap(), b"1");
    assert_eq!(
        std::fs::metadata(two.join("b")).unwrap().mode() & 0o777,
        0o440
    );
    let one_id = mount_id(&one).unwrap();
    let held = std::fs::File::open(one.join("a")).unwrap();

    // Remove `two`, add `three`, leave `one` as it was.
    std::fs::write(
        &config,
        format!(
            "{}{}",
            mount_block(&emu, &one, ""),
            mount_block(&emu, &three, "")
        ),
    )
    .unwrap();
    svc.signal(libc::SIGHUP);
    assert!(
        wait_until(WAIT, || is_mounted(&three) && !is_mounted(&two)),
        "reload applied"
    );
    assert_eq!(
        mount_id(&one).unwrap(),
        one_id,
        "the unchanged mount was not touched"
    );
    let mut s = String::new();
    (&held).read_to_string(&mut s).unwrap();
    assert_eq!(s, "1", "a file open across the reload still reads");
    assert_eq!(std::fs::read(three.join("b")).unwrap(), b"2");

    // A broken file on reload keeps everything running.
    std::fs::write(&config, "[[mount]]\nvault = \"x\"\nbogus = 1\n").unwrap();
    svc.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    assert!(is_mounted(&one) && is_mounted(&three));
    assert_eq!(std::fs::read(one.join("a")).unwrap(), b"1");

    drop(svc);
    assert!(
        wait_until(WAIT, || !is_mounted(&one) && !is_mounted(&three)),
        "SIGTERM unmounts all"
    );
}

#[test]
fn broken_config_files_name_the_file_the_field_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str]); 7] = [
        ("[[mount]]\nvault = \"kv1\"\npath = \"/tmp/x\"\nbogus = 1\n", &["unknown field", "bogus", "line"]),
        ("[[mount]]\nvault = \"kv1\"\npath = \"/tmp/x\"\nfile_mode = \"999\"\n", &["#1", "file_mode", "octal"]),
        ("[[mount]]\npath = \"/tmp/x\"\n", &["vault", "required"]),
        ("[[mount]]\nvault = \"kv_1\"\npath = \"/tmp/x\"\n", &["vault", "kv_1"]),
        ("[[mount]]\nvault = \"kv1\"\npath = \"/tmp/x\"\n[[mount]]\nvault = \"kv2\"\npath = \"/tmp/x\"\n", &["#2", "used by another mount"]),
        ("mount = [\n", &["line"]),
        ("metrics_listen = \"nowhere\"\n[[mount]]\nvault = \"kv1\"\npath = \"/tmp/x\"\n", &["metrics_listen"]),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&file, text).unwrap();
        let mut cmd = akvfs(&[]);
        cmd.arg("run").arg("--config").arg(&file);
        let out = run(cmd);
        assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
        let line = out.error_line();
        assert!(line.contains(&file.display().to_string()), "{line}");
        for w in *want {
            assert!(line.contains(w), "{line:?} should mention {w:?}");
        }
    }
    let mut cmd = akvfs(&[]);
    cmd.arg("run")
        .arg("--config")
        .arg(dir.path().join("missing.toml"));
    let out = run(cmd);
    assert!(
        out.error_line().contains("cannot read config file"),
        "{}",
        out.stderr
    );
}

#[test]
fn metrics_match_the_vaults_own_counts() {
    let emu = emulator_with(&[("a", "1"), ("b", "22"), ("c", "333")]);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let m = Mount::new(
        &emu,
        &["--metrics-listen", &addr, "--refresh-interval", "5m"],
    );
    assert_eq!(http_get(port, "/healthz").0, 200);
    assert!(
        wait_until(WAIT, || http_get(port, "/readyz").0 == 200),
        "ready once serving with a token"
    );
    for n in ["a", "b", "c", "a", "b"] {
        m.read(n).unwrap();
    }
    let _ = m.read("missing");
    let (status, metrics) = http_get(port, "/metrics");
    assert_eq!(status, 200);
    let c = emu.counts();
    assert_eq!(
        sample(
            &metrics,
            "akvfs_upstream_requests_total",
            &["operation=\"get\"", "status=\"200\""]
        ),
        3.0
    );
    assert_eq!(
        sample(
            &metrics,
            "akvfs_upstream_requests_total",
            &["operation=\"get\""]
        ) as u64,
        c.get("get_secret"),
        "GETs (including the 404) match the vault's count\n{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "akvfs_upstream_requests_total",
            &["operation=\"list\""]
        ) as u64,
        c.get("list_secrets")
    );
    assert!(sample(&metrics, "akvfs_lookups_total", &[]) >= 3.0);
    assert!(
        sample(&metrics, "akvfs_reads_total", &[]) >= 3.0,
        "first reads reach the daemon"
    );
    assert!(sample(&metrics, "akvfs_cache_misses_total", &[]) >= 3.0);
    assert!(sample(&metrics, "akvfs_token_refreshes_total", &[]) >= 1.0);
    assert_eq!(sample(&metrics, "akvfs_mount_up", &[]), 1.0);
    assert!(metrics.contains("akvfs_upstream_request_duration_seconds_bucket"));
    assert!(
        !metrics.contains("secret=\""),
        "no secret names in labels unless asked"
    );
    assert!(!metrics.contains("333"), "no values anywhere");
}

#[test]
fn sd_notify_reports_ready() {
    let emu = emulator_with(&[("a", "1")]);
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut env = wi_env(&emu);
    env.push(("NOTIFY_SOCKET".into(), sock_path.display().to_string()));
    let _m = Mount::with_env(&emu, &env, &[]);
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));
}

#[test]
fn the_mount_helper_syntax_of_fstab_works() {
    let emu = emulator_with(&[("a", "1")]);
    let dir = tempfile::tempdir().unwrap();
    let helper = dir.path().join("mount.fuse.akvfs");
    std::os::unix::fs::symlink(akvfs_bin(), &helper).unwrap();
    let mnt = dir.path().join("kv");
    std::fs::create_dir(&mnt).unwrap();
    let opts = format!(
        "rw,nodev,nosuid,_netdev,nofail,x-systemd.automount,allow_other,file_mode=0444,auth=workload-identity,ca_file={},disable_challenge_resource_verification",
        emu.info().ca_file
    );
    let mut cmd = Command::new(&helper);
    for (k, v) in wi_env(&emu) {
        cmd.env(k, v);
    }
    cmd.arg(&emu.info().vault_url)
        .arg(&mnt)
        .arg("-o")
        .arg(&opts);
    let out = run(cmd);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(is_mounted(&mnt));
    assert_eq!(std::fs::read(mnt.join("a")).unwrap(), b"1");
    assert_eq!(
        std::fs::metadata(mnt.join("a")).unwrap().mode() & 0o777,
        0o444
    );
    let status = Command::new("umount").arg(&mnt).status().unwrap();
    assert!(status.success());
    // A bad option is named.
    let mut cmd = Command::new(&helper);
    cmd.arg(&emu.info().vault_url)
        .arg(&mnt)
        .arg("-o")
        .arg("file_mode=banana");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.error_line().contains("file_mode") || out.error_line().contains("file-mode"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_mount_that_cannot_start_is_reported_and_retried_until_it_serves() {
    let emu = emulator_with(&[("a", "1")]);
    let dir = tempfile::tempdir().unwrap();
    let (good, late) = (dir.path().join("good"), dir.path().join("late"));
    // `late` uses an identity the directory does not know yet, as when a
    // role assignment or federated credential has not propagated.
    let late_client = "11111111-2222-3333-4444-555555555555";
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "{}{}",
            mount_block(&emu, &good, ""),
            mount_block(
                &emu,
                &late,
                &format!("client_id = \"{late_client}\"\nfetch_timeout = \"1s\"")
            )
        ),
    )
    .unwrap();
    let port = free_port();
    let _svc = Service::start(
        &emu,
        &config,
        &["--metrics-listen", &format!("127.0.0.1:{port}")],
    );
    assert!(
        wait_until(WAIT, || is_mounted(&good)),
        "the good mount serves"
    );
    assert!(!is_mounted(&late));
    let (status, body) = http_get(port, "/readyz");
    assert_eq!(status, 503);
    assert!(body.contains(&late.display().to_string()), "{body}");
    let (_, metrics) = http_get(port, "/metrics");
    let late_label = format!("mountpoint=\"{}\"", late.display());
    assert_eq!(
        sample(&metrics, "akvfs_mount_up", &[&late_label]),
        0.0,
        "{metrics}"
    );

    let mut identity = akvfs_emulator::Identity::new(late_client);
    identity.federated_subjects = vec![EmulatorConfig::default().federated_subject];
    emu.inner().add_identity(identity).unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || is_mounted(&late)),
        "retried until it serves"
    );
    assert_eq!(std::fs::read(late.join("a")).unwrap(), b"1");
    assert!(wait_until(WAIT, || http_get(port, "/readyz").0 == 200));
}
