//! A host answering for the vault with hostile certificate material: a
//! PKCS#12 file asking for absurd key derivation work, absurdly nested DER,
//! malformed PEM. Through a real mount against the emulator each read fails
//! with EIO and a log line naming the certificate and the limit, never the
//! material; the mount keeps serving the others.

mod common;
#[path = "certs/support.rs"]
mod support;

use base64::Engine;
use common::*;
use support::{import, make_chain, openssl, read};

fn errno(m: &Mount, path: &str) -> Option<i32> {
    m.read(path).err().and_then(|e| e.raw_os_error())
}

#[test]
fn hostile_certificate_secrets_fail_with_eio_and_name_only_the_certificate() {
    let emu = emulator_with(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    import(&emu, "good", &make_chain(d, "ec"));
    let b64 = |der: &[u8]| base64::engine::general_purpose::STANDARD.encode(der);

    // A real PFX whose three key derivations ask for 400,000 iterations each.
    openssl(
        d,
        &[
            "pkcs12", "-export", "-passout", "pass:", "-iter", "400000", "-inkey", "leaf.key",
            "-in", "leaf.crt", "-out", "slow.pfx",
        ],
    );
    let slow = b64(&read(d, "slow.pfx"));
    emu.set_secret_full("slow", &slow, Some("application/x-pkcs12"), &[]);
    // DER nested 200 deep.
    let mut deep = vec![0x05, 0x00];
    for _ in 0..200 {
        let mut outer = vec![0x30];
        if deep.len() < 0x80 {
            outer.push(deep.len() as u8);
        } else {
            outer.extend([0x82, (deep.len() >> 8) as u8, deep.len() as u8]);
        }
        outer.extend_from_slice(&deep);
        deep = outer;
    }
    emu.set_secret_full("deep", &b64(&deep), Some("application/x-pkcs12"), &[]);
    emu.set_secret_full(
        "badpem",
        "-----BEGIN CERTIFICATE-----\nMARKERMARKER!!\n-----END CERTIFICATE-----\n",
        Some("application/x-pem-file"),
        &[],
    );

    let m = Mount::new(&emu, &["--refresh-interval", "1s"]);
    for name in ["slow", "deep", "badpem"] {
        assert_eq!(
            errno(&m, &format!(".certs/{name}/tls.pem")),
            Some(libc::EIO),
            "{name}"
        );
    }
    assert_eq!(
        m.read(".certs/good/leaf.crt").unwrap(),
        read(d, "leaf.crt"),
        "the others still serve"
    );
    let log = m.log();
    assert!(
        log.contains("slow") && log.contains("iterations"),
        "the log names the certificate and the limit:\n{log}"
    );
    assert!(log.contains("deep") && log.contains("deeper than"), "{log}");
    assert!(!log.contains(&slow[..40]), "no byte of the file is logged");
    assert!(
        !log.contains("MARKERMARKER"),
        "no byte of the PEM is logged"
    );
}
