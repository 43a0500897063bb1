//! A root -> intermediate -> leaf chain made by the OpenSSL command line, for the tests of the
//! certificate conversions (included by `src/objects`) and of mounts (`tests/certs*`): every
//! expected byte comes from OpenSSL, not from akvfs. Standard library only.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Runs `openssl args` in `dir`; its stdout.
pub fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command line is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn read(dir: &Path, f: &str) -> Vec<u8> {
    std::fs::read(dir.join(f)).unwrap()
}

/// Writes `root`, `inter` and `leaf` `.key` and `.crt` into `dir`: keys of `alg` ("rsa": RSA
/// 2048, "ec": P-256, "p384": P-384), subject and authority key identifiers on every
/// certificate, the leaf for `localhost` with serverAuth; CNs `Test Root`, `Test Intermediate`
/// and `localhost`.
pub fn chain(dir: &Path, alg: &str) {
    let key_opts: &[&str] = match alg {
        "rsa" => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        "p384" => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
        _ => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    };
    for k in ["root.key", "inter.key", "leaf.key"] {
        let mut args = vec!["genpkey"];
        args.extend_from_slice(key_opts);
        args.extend_from_slice(&["-out", k]);
        openssl(dir, &args);
    }
    std::fs::write(
        dir.join("ext.cnf"),
        "[ca]\nbasicConstraints=critical,CA:true\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n[leaf]\nbasicConstraints=CA:false\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\nsubjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let days = ["-days", "30"];
    let mut root = vec!["req", "-x509", "-new", "-key", "root.key"];
    root.extend_from_slice(&["-subj", "/CN=Test Root", "-out", "root.crt"]);
    root.extend_from_slice(&days);
    openssl(dir, &root);
    for (name, cn, ca, ext) in [
        ("inter", "/CN=Test Intermediate", "root", "ca"),
        ("leaf", "/CN=localhost", "inter", "leaf"),
    ] {
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        openssl(
            dir,
            &["req", "-new", "-key", &key, "-subj", cn, "-out", &csr],
        );
        let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
        let mut sign = vec![
            "x509", "-req", "-in", &csr, "-CA", &ca_crt, "-CAkey", &ca_key,
        ];
        sign.extend_from_slice(&["-CAcreateserial", "-extfile", "ext.cnf"]);
        sign.extend_from_slice(&["-extensions", ext, "-out", &crt]);
        sign.extend_from_slice(&days);
        openssl(dir, &sign);
    }
}

/// Writes a self-signed P-256 certificate for `cn` and its key into `dir` (`c.pem`, `k.pem`).
pub fn self_signed(dir: &Path, cn: &str) {
    let subject = format!("/CN={cn}");
    let mut args = vec!["req", "-x509", "-newkey", "ec", "-pkeyopt"];
    args.extend_from_slice(&["ec_paramgen_curve:P-256", "-nodes", "-days", "2"]);
    args.extend_from_slice(&["-subj", &subject, "-keyout", "k.pem", "-out", "c.pem"]);
    openssl(dir, &args);
}
