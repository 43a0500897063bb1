//! Conversions byte-compared against what the OpenSSL command line produces
//! on its own from the same keys and certificates.

use std::path::Path;

use base64::Engine;

#[path = "../../tests/certs/openssl_chain.rs"]
mod openssl_chain;
pub(crate) use openssl_chain::{chain, openssl, read, self_signed};

use super::bundle::from_secret;
use super::{ObjectError, PEM, PKCS12};

fn pfx_b64(dir: &Path, extra: &[&str]) -> Vec<u8> {
    let mut args = vec!["pkcs12", "-export", "-passout", "pass:", "-out", "cert.pfx"];
    args.extend_from_slice(extra);
    openssl(dir, &args);
    base64::engine::general_purpose::STANDARD
        .encode(read(dir, "cert.pfx"))
        .into_bytes()
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn check_complete(alg: &str, pfx_extra: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    chain(d, alg);
    // The CA certificates go in root-first, the wrong way round.
    std::fs::write(
        d.join("cas.crt"),
        cat(&[read(d, "root.crt"), read(d, "inter.crt")]),
    )
    .unwrap();
    let mut extra = vec![
        "-inkey",
        "leaf.key",
        "-in",
        "leaf.crt",
        "-certfile",
        "cas.crt",
    ];
    extra.extend_from_slice(pfx_extra);
    let value = pfx_b64(d, &extra);
    let parts = from_secret(&value, Some(PKCS12)).unwrap();
    let pkcs8 = openssl(d, &["pkcs8", "-topk8", "-nocrypt", "-in", "leaf.key"]);
    let traditional = openssl(d, &["pkey", "-in", "leaf.key", "-traditional"]);
    let chain = cat(&[
        read(d, "leaf.crt"),
        read(d, "inter.crt"),
        read(d, "root.crt"),
    ]);
    assert!(parts.complete_chain);
    assert_eq!(
        String::from_utf8_lossy(&parts.tls_crt),
        String::from_utf8_lossy(&chain)
    );
    assert_eq!(&parts.tls_pem[..], &cat(&[pkcs8, chain.clone()])[..]);
    assert_eq!(&parts.tls_key.as_ref().unwrap()[..], &traditional[..]);
    assert_eq!(parts.leaf_crt, read(d, "leaf.crt"));
    assert_eq!(
        parts.ca_crt,
        cat(&[read(d, "inter.crt"), read(d, "root.crt")])
    );
    assert_eq!(&parts.pfx.as_ref().unwrap()[..], &read(d, "cert.pfx")[..]);
    let fp = openssl(
        d,
        &["x509", "-in", "leaf.crt", "-noout", "-fingerprint", "-sha1"],
    );
    let hex: String = String::from_utf8_lossy(&fp)
        .split('=')
        .nth(1)
        .unwrap()
        .trim()
        .replace(':', "");
    let sha1: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert_eq!(
        parts.leaf.x5t,
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha1)
    );
    assert_eq!(parts.leaf.subject, "CN=localhost");
    assert_eq!(parts.leaf.issuer, "CN=Test Intermediate");
}

#[test]
fn pkcs12_rsa_complete_chain_matches_openssl() {
    check_complete("rsa", &[]);
}

#[test]
fn pkcs12_ec_complete_chain_matches_openssl() {
    check_complete("ec", &[]);
}

#[test]
fn pkcs12_with_key_vault_legacy_encryption() {
    check_complete(
        "rsa",
        &[
            "-keypbe",
            "PBE-SHA1-3DES",
            "-certpbe",
            "PBE-SHA1-3DES",
            "-macalg",
            "sha1",
        ],
    );
}

#[test]
fn incomplete_chain_keeps_the_original_order() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    chain(d, "rsa");
    // No intermediate: the leaf's issuer is missing.
    let value = pfx_b64(
        d,
        &[
            "-inkey",
            "leaf.key",
            "-in",
            "leaf.crt",
            "-certfile",
            "root.crt",
        ],
    );
    let parts = from_secret(&value, Some(PKCS12)).unwrap();
    assert!(!parts.complete_chain);
    let bags = openssl(
        d,
        &["pkcs12", "-in", "cert.pfx", "-passin", "pass:", "-nokeys"],
    );
    // The certificates in the order the PFX holds them.
    let order: Vec<&str> = String::from_utf8_lossy(&bags)
        .lines()
        .filter(|l| l.starts_with("subject="))
        .map(|l| {
            if l.contains("localhost") {
                "leaf"
            } else {
                "root"
            }
        })
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    let expected: Vec<u8> = order
        .iter()
        .flat_map(|n| read(d, &format!("{n}.crt")))
        .collect();
    assert_eq!(parts.tls_crt, expected);
}

#[test]
fn non_exportable_certificate_has_no_key() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    chain(d, "ec");
    let value = pfx_b64(d, &["-nokeys", "-in", "leaf.crt", "-certfile", "inter.crt"]);
    let parts = from_secret(&value, Some(PKCS12)).unwrap();
    assert!(parts.tls_key.is_none());
    assert_eq!(
        &parts.tls_pem[..],
        &cat(&[read(d, "leaf.crt"), read(d, "inter.crt")])[..]
    );
}

#[test]
fn pem_certificate_is_served_as_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    chain(d, "rsa");
    let pkcs8 = openssl(d, &["pkcs8", "-topk8", "-nocrypt", "-in", "leaf.key"]);
    let value = cat(&[
        pkcs8,
        read(d, "root.crt"),
        read(d, "leaf.crt"),
        read(d, "inter.crt"),
    ]);
    let parts = from_secret(&value, Some(PEM)).unwrap();
    assert_eq!(&parts.tls_pem[..], &value[..]);
    assert_eq!(
        parts.tls_crt,
        cat(&[
            read(d, "leaf.crt"),
            read(d, "inter.crt"),
            read(d, "root.crt")
        ])
    );
    let traditional = openssl(d, &["pkey", "-in", "leaf.key", "-traditional"]);
    assert_eq!(&parts.tls_key.unwrap()[..], &traditional[..]);
    assert!(parts.pfx.is_none());
}

#[test]
fn other_content_types_are_not_certificates() {
    assert!(matches!(
        from_secret(b"x", Some("text/plain")),
        Err(ObjectError::NotCertificate(_))
    ));
    assert!(matches!(
        from_secret(b"@@", Some(PKCS12)),
        Err(ObjectError::Pkcs12(_))
    ));
}
