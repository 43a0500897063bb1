//! Certificates, keys and versions through real mounts against the emulator,
//! read by real clients: OpenSSL, nginx and a Python program. Every expected
//! byte is produced here by the OpenSSL command line, not by akvfs.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use akvfs_emulator::SeedCertVersion;
use base64::Engine;
use common::*;

fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn read(dir: &Path, f: &str) -> Vec<u8> {
    std::fs::read(dir.join(f)).unwrap()
}

/// A root -> intermediate -> leaf chain for `localhost` with RSA keys, and
/// a PFX (empty password) holding the leaf's key, the leaf and the CAs in
/// the wrong order. Returns the base64 PFX.
fn make_chain(dir: &Path, alg: &str) -> String {
    let key = |name: &str| {
        let opt = if alg == "rsa" {
            ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]
        } else {
            ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"]
        };
        let mut args = vec!["genpkey"];
        args.extend_from_slice(&opt);
        args.extend_from_slice(&["-out", name]);
        openssl(dir, &args);
    };
    for k in ["root.key", "inter.key", "leaf.key"] {
        key(k);
    }
    std::fs::write(
        dir.join("ext.cnf"),
        "[ca]\nbasicConstraints=critical,CA:true\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n[leaf]\nbasicConstraints=CA:false\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\nsubjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let o = |args: &[&str]| {
        openssl(dir, args);
    };
    o(&[
        "req", "-x509", "-new", "-key", "root.key", "-subj", "/CN=Root", "-days", "30", "-out",
        "root.crt",
    ]);
    o(&[
        "req",
        "-new",
        "-key",
        "inter.key",
        "-subj",
        "/CN=Intermediate",
        "-out",
        "inter.csr",
    ]);
    o(&[
        "x509",
        "-req",
        "-in",
        "inter.csr",
        "-CA",
        "root.crt",
        "-CAkey",
        "root.key",
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        "ext.cnf",
        "-extensions",
        "ca",
        "-out",
        "inter.crt",
    ]);
    o(&[
        "req",
        "-new",
        "-key",
        "leaf.key",
        "-subj",
        "/CN=localhost",
        "-out",
        "leaf.csr",
    ]);
    o(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "inter.crt",
        "-CAkey",
        "inter.key",
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        "ext.cnf",
        "-extensions",
        "leaf",
        "-out",
        "leaf.crt",
    ]);
    std::fs::write(
        dir.join("cas.crt"),
        [read(dir, "root.crt"), read(dir, "inter.crt")].concat(),
    )
    .unwrap();
    o(&[
        "pkcs12",
        "-export",
        "-passout",
        "pass:",
        "-inkey",
        "leaf.key",
        "-in",
        "leaf.crt",
        "-certfile",
        "cas.crt",
        "-out",
        "cert.pfx",
    ]);
    base64::engine::general_purpose::STANDARD.encode(read(dir, "cert.pfx"))
}

fn import(emu: &Emulator, name: &str, pfx_b64: &str) -> String {
    emu.inner()
        .add_certificate_version(
            name,
            &SeedCertVersion {
                pfx: Some(pfx_b64.to_string()),
                ..Default::default()
            },
        )
        .expect("the emulator imports the PFX")
}

fn cert_mount(emu: &Emulator) -> Mount {
    Mount::new(emu, &["--refresh-interval", "1s"])
}

#[test]
fn certificate_files_match_openssl_and_real_tools_accept_them() {
    let emu = emulator_with(&[("plain", "value")]);
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let pfx = make_chain(d, "rsa");
    let version = import(&emu, "web", &pfx);
    let m = cert_mount(&emu);
    let dir = m.file(".certs/web");

    let pkcs8 = openssl(d, &["pkcs8", "-topk8", "-nocrypt", "-in", "leaf.key"]);
    let chain = [
        read(d, "leaf.crt"),
        read(d, "inter.crt"),
        read(d, "root.crt"),
    ]
    .concat();
    assert_eq!(std::fs::read(dir.join("tls.crt")).unwrap(), chain);
    assert_eq!(
        std::fs::read(dir.join("tls.pem")).unwrap(),
        [pkcs8, chain.clone()].concat()
    );
    assert_eq!(
        std::fs::read(dir.join("tls.key")).unwrap(),
        openssl(d, &["pkey", "-in", "leaf.key", "-traditional"])
    );
    assert_eq!(
        std::fs::read(dir.join("leaf.crt")).unwrap(),
        read(d, "leaf.crt")
    );
    // The vault stores its own PKCS#12 encoding of the import: OpenSSL
    // reads it with the empty password.
    let pfx_file = dir.join("cert.pfx");
    let pfx_certs = openssl(
        d,
        &[
            "pkcs12",
            "-in",
            pfx_file.to_str().unwrap(),
            "-passin",
            "pass:",
            "-nokeys",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&pfx_certs)
            .matches("BEGIN CERTIFICATE")
            .count(),
        3
    );
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["ca.crt", "cert.pfx", "leaf.crt", "tls.crt", "tls.key", "tls.pem"]
    );

    // openssl verify accepts the chain from the mount.
    let leaf = dir.join("leaf.crt");
    let ca = dir.join("ca.crt");
    let out = openssl(
        d,
        &[
            "verify",
            "-CAfile",
            "root.crt",
            "-untrusted",
            ca.to_str().unwrap(),
            leaf.to_str().unwrap(),
        ],
    );
    assert!(
        String::from_utf8_lossy(&out).contains(": OK"),
        "{}",
        String::from_utf8_lossy(&out)
    );

    // The key's public part, as OpenSSL reads it, is the leaf's.
    let key_pem = m.file(".keys/web.pem");
    let from_mount = openssl(d, &["pkey", "-pubin", "-in", key_pem.to_str().unwrap()]);
    let from_leaf = openssl(d, &["x509", "-in", "leaf.crt", "-pubkey", "-noout"]);
    assert_eq!(from_mount, from_leaf);
    let jwk: serde_json::Value = serde_json::from_slice(&m.read(".keys/web.jwk").unwrap()).unwrap();
    assert_eq!(jwk["kty"], "RSA");

    // Metadata as extended attributes.
    let fp = openssl(
        d,
        &["x509", "-in", "leaf.crt", "-noout", "-fingerprint", "-sha1"],
    );
    let hex = String::from_utf8_lossy(&fp)
        .split('=')
        .nth(1)
        .unwrap()
        .trim()
        .replace(':', "");
    let sha1: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let x5t = xattr::get(dir.join("tls.crt"), "user.akv.x5t")
        .unwrap()
        .unwrap();
    assert_eq!(
        x5t,
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha1)
            .into_bytes()
    );
    let subject = xattr::get(&dir, "user.akv.subject").unwrap().unwrap();
    assert_eq!(subject, b"CN=localhost");
    assert!(xattr::get(&dir, "user.akv.not_after").unwrap().is_some());
    assert_eq!(
        xattr::get(&dir, "user.akv.version").unwrap().unwrap(),
        version.as_bytes()
    );

    // Version history: one version, then two, newest first, each immutable.
    let versions = |m: &Mount| -> Vec<String> {
        let mut v: Vec<_> = std::fs::read_dir(m.file(".versions/web"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(versions(&m), [version.clone()]);
    let b64 = |b: Vec<u8>| {
        base64::engine::general_purpose::STANDARD
            .encode(b)
            .into_bytes()
    };
    let first_pfx = b64(std::fs::read(&pfx_file).unwrap());
    assert_eq!(
        m.read(&format!(".versions/web/{version}")).unwrap(),
        first_pfx
    );
    let tmp2 = tempfile::tempdir().unwrap();
    let pfx2 = make_chain(tmp2.path(), "ec");
    let v2 = import(&emu, "web", &pfx2);
    assert!(
        wait_until(Duration::from_secs(60), || std::fs::read(
            dir.join("leaf.crt")
        )
        .ok()
            == Some(read(tmp2.path(), "leaf.crt"))),
        "the rotated certificate shows up"
    );
    assert!(wait_until(Duration::from_secs(60), || versions(&m).len() == 2));
    let mut both = vec![version.clone(), v2.clone()];
    both.sort();
    assert_eq!(versions(&m), both);
    assert_eq!(
        m.read(&format!(".versions/web/{version}")).unwrap(),
        first_pfx
    );
    assert_eq!(
        m.read(&format!(".versions/web/{v2}")).unwrap(),
        b64(std::fs::read(&pfx_file).unwrap())
    );
    assert_eq!(
        std::fs::read(dir.join("tls.key")).unwrap(),
        openssl(tmp2.path(), &["pkey", "-in", "leaf.key", "-traditional"])
    );
    // A plain secret is no certificate.
    assert!(!m.file(".certs/plain").exists());
    assert!(m
        .read(".versions/web/0123456789abcdef0123456789abcdef")
        .is_err());
}

/// The public key of a PEM certificate and of a PEM private key, by OpenSSL.
fn pubkeys(dir: &Path, cert: &[u8], key: &[u8]) -> (Vec<u8>, Vec<u8>) {
    std::fs::write(dir.join("c.pem"), cert).unwrap();
    std::fs::write(dir.join("k.pem"), key).unwrap();
    (
        openssl(dir, &["x509", "-in", "c.pem", "-pubkey", "-noout"]),
        openssl(dir, &["pkey", "-in", "k.pem", "-pubout"]),
    )
}

#[test]
fn an_opened_certificate_directory_reads_a_matched_pair_across_a_rotation() {
    let emu = emulator_with(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    import(&emu, "web", &make_chain(d, "rsa"));
    let m = cert_mount(&emu);
    let dir = m.file(".certs/web");
    // Opens the directory once, reads the certificate, waits, then reads
    // the key through the same directory descriptor.
    let script = r#"
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
def read(name):
    f = os.open(name, os.O_RDONLY, dir_fd=fd)
    data = b""
    while True:
        chunk = os.read(f, 65536)
        if not chunk:
            break
        data += chunk
    os.close(f)
    return data
crt = read("tls.crt")
print("ready", flush=True)
sys.stdin.readline()
key = read("tls.key")
sys.stdout.write(crt.hex() + "\n" + key.hex() + "\n")
"#;
    let mut child = Command::new("python3")
        .args(["-c", script, dir.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");

    let tmp2 = tempfile::tempdir().unwrap();
    import(&emu, "web", &make_chain(tmp2.path(), "rsa"));
    assert!(
        wait_until(Duration::from_secs(60), || std::fs::read(
            dir.join("leaf.crt")
        )
        .ok()
            == Some(read(tmp2.path(), "leaf.crt"))),
        "a new open of the path sees the rotated certificate"
    );
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    let mut lines = rest.lines();
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    };
    let crt = hex(lines.next().unwrap());
    let key = hex(lines.next().unwrap());
    // The pair read through the old descriptor is the old version's, matched.
    assert!(crt.starts_with(&read(d, "leaf.crt")));
    let (a, b) = pubkeys(d, &crt, &key);
    assert_eq!(a, b, "certificate and key read through one directory match");
    // And the new path gives the new matched pair.
    let (a, b) = pubkeys(
        tmp2.path(),
        &std::fs::read(dir.join("tls.crt")).unwrap(),
        &std::fs::read(dir.join("tls.key")).unwrap(),
    );
    assert_eq!(a, b);
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
