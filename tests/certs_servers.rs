//! Certificates from a real mount read by real servers: nginx serves the
//! mounted certificate and, after a rotation and a reload, the new one; a
//! denied certificate fails closed. Expected bytes come from OpenSSL.

mod common;
#[path = "certs/support.rs"]
mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use support::{import, make_chain, read};

fn cert_mount(emu: &Emulator) -> Mount {
    Mount::new(emu, &["--refresh-interval", "1s"])
}

fn served_cert(port: u16) -> Option<Vec<u8>> {
    let s = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "localhost",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let mut x = Command::new("openssl")
        .args(["x509"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    x.stdin.take()?.write_all(&s.stdout).ok()?;
    let out = x.wait_with_output().ok()?;
    out.status.success().then_some(out.stdout)
}

#[test]
fn nginx_serves_the_mounted_certificate_and_the_rotated_one_after_a_reload() {
    if Command::new("nginx").arg("-v").output().is_err() {
        panic!("nginx is not installed (scripts/test installs nginx-light)");
    }
    let emu = emulator_with(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    import(&emu, "web", &make_chain(d, "rsa"));
    let m = cert_mount(&emu);
    let dir = m.file(".certs/web");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let prefix = d.join("nginx");
    std::fs::create_dir(&prefix).unwrap();
    let conf = prefix.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "pid {p}/nginx.pid;\nerror_log {p}/error.log;\nworker_processes 1;\nevents {{}}\nhttp {{\n access_log off;\n client_body_temp_path {p};\n proxy_temp_path {p};\n fastcgi_temp_path {p};\n uwsgi_temp_path {p};\n scgi_temp_path {p};\n server {{\n  listen 127.0.0.1:{port} ssl;\n  ssl_certificate {c};\n  ssl_certificate_key {k};\n  location / {{ return 200 \"ok\"; }}\n }}\n}}\n",
            p = prefix.display(),
            c = dir.join("tls.crt").display(),
            k = dir.join("tls.key").display(),
        ),
    )
    .unwrap();
    let nginx = |extra: &[&str]| {
        let mut args = vec!["-p", prefix.to_str().unwrap(), "-c", conf.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = Command::new("nginx").args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "nginx {extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    nginx(&[]);
    struct Stop<'a>(&'a dyn Fn(&[&str]));
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            (self.0)(&["-s", "stop"]);
        }
    }
    let _stop = Stop(&nginx);
    assert!(
        wait_until(Duration::from_secs(30), || served_cert(port)
            == Some(read(d, "leaf.crt"))),
        "nginx serves the certificate from the mount"
    );
    let tmp2 = tempfile::tempdir().unwrap();
    import(&emu, "web", &make_chain(tmp2.path(), "rsa"));
    assert!(wait_until(Duration::from_secs(60), || std::fs::read(
        dir.join("leaf.crt")
    )
    .ok()
        == Some(read(tmp2.path(), "leaf.crt"))));
    nginx(&["-s", "reload"]);
    assert!(
        wait_until(Duration::from_secs(60), || served_cert(port)
            == Some(read(tmp2.path(), "leaf.crt"))),
        "after a reload nginx serves the rotated certificate"
    );
}

#[test]
fn a_denied_certificate_fails_closed_for_new_opens_and_open_descriptors() {
    use std::os::unix::fs::FileExt;
    let emu = emulator_with(&[("other", "o")]);
    let tmp = tempfile::tempdir().unwrap();
    import(&emu, "web", &make_chain(tmp.path(), "ec"));
    let m = Mount::new(
        &emu,
        &["--refresh-interval", "1s", "--max-unverified", "3s"],
    );
    let key_path = m.file(".certs/web/tls.key");
    let held = std::fs::File::open(&key_path).unwrap();
    let mut buf = [0u8; 16];
    held.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..5], b"-----");
    // Same-second writes are re-read for a while; let the listing vouch.
    std::thread::sleep(Duration::from_millis(3500));
    emu.deny_secret(&emu.info().client_id, "web");
    let errno = |p: &Path| std::fs::read(p).err().and_then(|e| e.raw_os_error());
    assert!(
        wait_until(Duration::from_secs(40), || errno(&key_path)
            == Some(libc::EACCES)),
        "a new open of the key fails once the secret may not be read"
    );
    assert_eq!(
        held.read_at(&mut buf, 0)
            .err()
            .and_then(|e| e.raw_os_error()),
        Some(libc::EACCES),
        "an open descriptor stops reading the key"
    );
    assert_eq!(m.read("other").unwrap(), b"o");
}
