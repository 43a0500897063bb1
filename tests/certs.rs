//! Certificates, keys and versions through real mounts against the emulator,
//! read by real clients: OpenSSL, nginx and a Python program. Every expected
//! byte is produced here by the OpenSSL command line, not by akvfs.

mod common;
#[path = "certs/support.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use common::*;
use support::{import, make_chain, openssl, read};

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
    assert_eq!(versions(&m), std::slice::from_ref(&version));
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
