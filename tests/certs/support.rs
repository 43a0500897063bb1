//! Helpers of the certificate tests: chains made by the OpenSSL command
//! line and imported into the emulator.

use std::path::Path;
use std::process::Command;

use akvfs_emulator::SeedCertVersion;
use base64::Engine;

use crate::common::Emulator;

pub fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
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

pub fn read(dir: &Path, f: &str) -> Vec<u8> {
    std::fs::read(dir.join(f)).unwrap()
}

/// A root -> intermediate -> leaf chain for `localhost` with RSA keys, and
/// a PFX (empty password) holding the leaf's key, the leaf and the CAs in
/// the wrong order. Returns the base64 PFX.
pub fn make_chain(dir: &Path, alg: &str) -> String {
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

pub fn import(emu: &Emulator, name: &str, pfx_b64: &str) -> String {
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
