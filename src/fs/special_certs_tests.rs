//! Certificate directories and the value cache's byte budget, and the
//! public part an identity refused the secret gets.

use std::ffi::OsStr;

use super::tests::{pem_cert, read_all, setup, setup_with};
use super::CERTS_INO;
use crate::config::CacheConfig;
use crate::error::FsError;
use crate::fs::FsCore;

async fn read_part(fs: &FsCore, cert: &str, part: &str) -> Result<Vec<u8>, FsError> {
    let dir = fs.lookup(CERTS_INO, OsStr::new(cert)).await?;
    let file = fs.lookup(dir.attr.ino, OsStr::new(part)).await?;
    read_all(fs, file.attr.ino).await
}

#[tokio::test]
async fn derived_certificate_files_count_against_the_budget_and_leave_with_their_version() {
    let budget = 16 * 1024;
    let (vault, fs) = setup_with(CacheConfig {
        max_bytes: budget,
        ..Default::default()
    });
    let certs: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| {
            let name = format!("c{i}");
            let (pem, der) = pem_cert(&name);
            vault.put_certificate(&name, &pem, crate::objects::PEM, &der);
            (name, pem)
        })
        .collect();

    // One certificate: its derived files are charged on top of the value.
    let (first, pem) = &certs[0];
    assert_eq!(&read_part(&fs, first, "tls.pem").await.unwrap(), pem);
    let charged = fs.cache().bytes();
    let value_only = pem.len() as u64 + 512;
    assert!(
        charged > value_only + pem.len() as u64,
        "derived files are counted: {charged} > {value_only} + {}",
        pem.len()
    );

    // Many: the budget holds after every read, and older ones are evicted.
    for (name, pem) in &certs {
        assert_eq!(&read_part(&fs, name, "tls.pem").await.unwrap(), pem);
        assert!(
            fs.cache().bytes() <= budget,
            "{} > {budget}",
            fs.cache().bytes()
        );
    }
    assert!(fs.cache().len() < certs.len());
    assert!(
        fs.cache()
            .stats
            .evictions
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    // An evicted certificate is derived again from its version, on demand.
    assert_eq!(&read_part(&fs, first, "tls.pem").await.unwrap(), pem);
    assert!(fs.cache().bytes() <= budget);
}

#[tokio::test]
async fn an_identity_refused_the_secret_gets_the_public_leaf_only() {
    let (vault, fs) = setup();
    let (pem, der) = pem_cert("public");
    vault.put_certificate("web", &pem, crate::objects::PEM, &der);
    vault.deny("web", true);

    let leaf = read_part(&fs, "web", "leaf.crt").await.unwrap();
    let text = String::from_utf8(leaf).unwrap();
    assert!(text.starts_with("-----BEGIN CERTIFICATE-----\n"), "{text}");
    assert!(
        pem.ends_with(text.as_bytes()),
        "the leaf is the certificate's"
    );
    for part in ["tls.key", "tls.pem", "tls.crt", "ca.crt", "cert.pfx"] {
        let err = read_part(&fs, "web", part).await.unwrap_err();
        assert_eq!(err.errno(), libc::EACCES, "{part}: {err}");
        assert!(err.to_string().contains("web"), "{err}");
    }
    assert_eq!(
        read_part(&fs, "web", "other").await.unwrap_err().errno(),
        libc::ENOENT
    );
    // Its leaf's metadata is there.
    let dir = fs.lookup(CERTS_INO, OsStr::new("web")).await.unwrap();
    assert_eq!(
        fs.getxattr(dir.attr.ino, OsStr::new("user.akv.subject"))
            .unwrap(),
        b"CN=public"
    );
}
