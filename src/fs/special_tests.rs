//! The special namespace over the in-memory vault, without FUSE.

use std::ffi::OsStr;
use std::sync::Arc;

use super::{CERTS_INO, KEYS_INO, VERSIONS_INO};
use crate::config::CacheConfig;
use crate::error::FsError;
use crate::fs::{FsCore, Kind, ROOT_INO};
use crate::objects::jwk::PublicJwk;
use crate::objects::tests::{openssl, self_signed};
use crate::secret::SecretName;
use crate::vault::memory::MemoryVault;
use crate::vault::VaultError;

pub(super) fn setup() -> (Arc<MemoryVault>, Arc<FsCore>) {
    setup_with(CacheConfig::default())
}

pub(super) fn setup_with(cfg: CacheConfig) -> (Arc<MemoryVault>, Arc<FsCore>) {
    crate::fs::fixture::memory_fs(cfg)
}

/// A self-signed EC certificate and its key as one PEM (key first), made
/// by the OpenSSL command line; and the leaf's DER.
pub(super) fn pem_cert(cn: &str) -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    self_signed(dir.path(), cn);
    let der = openssl(dir.path(), &["x509", "-in", "c.pem", "-outform", "DER"]);
    let pem = [
        std::fs::read(dir.path().join("k.pem")).unwrap(),
        std::fs::read(dir.path().join("c.pem")).unwrap(),
    ]
    .concat();
    (pem, der)
}

pub(super) async fn read_all(fs: &FsCore, ino: u64) -> Result<Vec<u8>, FsError> {
    Ok(fs.read(ino, 0, 1 << 20).await?.bytes().to_vec())
}

#[tokio::test]
async fn a_certificate_directory_stays_on_its_version_and_is_revoked_with_its_secret() {
    let (vault, fs) = setup();
    let (pem1, der1) = pem_cert("one");
    vault.put_certificate("web", &pem1, crate::objects::PEM, &der1);
    let certs = fs.lookup(ROOT_INO, OsStr::new(".certs")).await.unwrap();
    assert_eq!(certs.attr.ino, CERTS_INO);
    let dir1 = fs.lookup(CERTS_INO, OsStr::new("web")).await.unwrap();
    assert_eq!(dir1.attr.kind, Kind::Directory);
    let pem_file = fs
        .lookup(dir1.attr.ino, OsStr::new("tls.pem"))
        .await
        .unwrap();
    assert_eq!(read_all(&fs, pem_file.attr.ino).await.unwrap(), pem1);
    let key1 = fs
        .lookup(dir1.attr.ino, OsStr::new("tls.key"))
        .await
        .unwrap();
    let key1_bytes = read_all(&fs, key1.attr.ino).await.unwrap();
    assert!(key1_bytes.starts_with(b"-----BEGIN EC PRIVATE KEY-----"));
    let x5t = fs
        .getxattr(pem_file.attr.ino, OsStr::new("user.akv.x5t"))
        .unwrap();
    assert_eq!(x5t.len(), 27);
    assert_eq!(
        fs.getxattr(dir1.attr.ino, OsStr::new("user.akv.subject"))
            .unwrap(),
        b"CN=one"
    );
    assert!(matches!(
        fs.lookup(dir1.attr.ino, OsStr::new("cert.pfx")).await,
        Err(FsError::NoEntry)
    ));

    // A rotation: a fresh lookup binds a new directory; the old one still
    // gives the old version's files.
    let (pem2, der2) = pem_cert("two");
    vault.put_certificate("web", &pem2, crate::objects::PEM, &der2);
    fs.cache()
        .fetch_latest(&SecretName::parse("web").unwrap())
        .await
        .unwrap();
    let dir2 = fs.lookup(CERTS_INO, OsStr::new("web")).await.unwrap();
    assert_ne!(dir1.attr.ino, dir2.attr.ino);
    let pem2_file = fs
        .lookup(dir2.attr.ino, OsStr::new("tls.pem"))
        .await
        .unwrap();
    assert_eq!(read_all(&fs, pem2_file.attr.ino).await.unwrap(), pem2);
    let old_key = fs
        .lookup(dir1.attr.ino, OsStr::new("tls.key"))
        .await
        .unwrap();
    assert_eq!(old_key.attr.ino, key1.attr.ino);
    assert_eq!(read_all(&fs, old_key.attr.ino).await.unwrap(), key1_bytes);

    // The refresher's revocation reaches every certificate file.
    let name = SecretName::parse("web").unwrap();
    assert!(fs.bound_names().contains_key(&name));
    let revoked = fs.revoke_inodes(&name, &VaultError::NotFound);
    assert!(revoked.contains(&key1.attr.ino) && revoked.contains(&pem2_file.attr.ino));
    assert_eq!(
        read_all(&fs, pem2_file.attr.ino).await.unwrap_err().errno(),
        libc::ENOENT
    );
    assert!(fs
        .lookup(dir1.attr.ino, OsStr::new("tls.crt"))
        .await
        .is_err());
}

#[tokio::test]
async fn a_plain_secret_is_not_a_certificate() {
    let (vault, fs) = setup();
    vault.put("plain", b"value");
    let err = fs.lookup(CERTS_INO, OsStr::new("plain")).await.unwrap_err();
    assert_eq!(err.errno(), libc::ENOENT);
    assert!(err.to_string().contains("plain"), "{err}");
}

#[tokio::test]
async fn version_history_lists_exactly_the_versions_and_reads_each() {
    let (vault, fs) = setup();
    let v: Vec<_> = (0..3)
        .map(|i| vault.put("db", format!("value-{i}").as_bytes()))
        .collect();
    fs.reload_listing().await.unwrap();
    let dir = fs.lookup(VERSIONS_INO, OsStr::new("db")).await.unwrap();
    let fh = fs.opendir(dir.attr.ino).await.unwrap();
    let entries = fs.readdir(fh, 0).unwrap();
    let names: Vec<&str> = entries.iter().skip(2).map(|e| e.name.as_str()).collect();
    assert_eq!(names.len(), 3);
    for (i, id) in v.iter().enumerate() {
        assert!(names.contains(&id.as_str()));
        let f = fs
            .lookup(dir.attr.ino, OsStr::new(id.as_str()))
            .await
            .unwrap();
        assert_eq!(
            read_all(&fs, f.attr.ino).await.unwrap(),
            format!("value-{i}").as_bytes()
        );
    }
    fs.releasedir(fh);
    let gets = vault.gets.load(std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(
        fs.lookup(dir.attr.ino, OsStr::new("ffffffffffffffffffffffffffffffff"))
            .await,
        Err(FsError::NoEntry)
    ));
    assert!(matches!(
        fs.lookup(dir.attr.ino, OsStr::new("../x")).await,
        Err(FsError::NoEntry)
    ));
    // Unknown version ids cost no GET.
    assert_eq!(vault.gets.load(std::sync::atomic::Ordering::SeqCst), gets);
    assert!(matches!(
        fs.lookup(VERSIONS_INO, OsStr::new("missing")).await,
        Err(FsError::NoEntry)
    ));
}

#[tokio::test]
async fn keys_are_public_pem_and_symmetric_keys_are_refused() {
    let (vault, fs) = setup();
    // A P-256 point (the generator).
    let x = hex("6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296");
    let y = hex("4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5");
    vault.put_key(
        "signing",
        PublicJwk {
            kty: "EC".into(),
            crv: Some("P-256".into()),
            x: Some(x),
            y: Some(y),
            ..Default::default()
        },
    );
    vault.put_key(
        "sym",
        PublicJwk {
            kty: "oct".into(),
            ..Default::default()
        },
    );
    let pem = fs
        .lookup(KEYS_INO, OsStr::new("signing.pem"))
        .await
        .unwrap();
    let bytes = read_all(&fs, pem.attr.ino).await.unwrap();
    assert!(bytes.starts_with(b"-----BEGIN PUBLIC KEY-----\n"));
    let jwk = fs
        .lookup(KEYS_INO, OsStr::new("signing.jwk"))
        .await
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&read_all(&fs, jwk.attr.ino).await.unwrap()).unwrap();
    assert_eq!(v["crv"], "P-256");
    let err = fs
        .lookup(KEYS_INO, OsStr::new("sym.pem"))
        .await
        .unwrap_err();
    assert_eq!(err.errno(), libc::EOPNOTSUPP);
    assert!(
        err.to_string().contains("sym") && err.to_string().contains("oct"),
        "{err}"
    );
    let fh = fs.opendir(KEYS_INO).await.unwrap();
    let names: Vec<String> = fs
        .readdir(fh, 0)
        .unwrap()
        .iter()
        .skip(2)
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(names, ["signing.jwk", "signing.pem", "sym.jwk", "sym.pem"]);
    assert!(matches!(
        fs.lookup(KEYS_INO, OsStr::new("signing")).await,
        Err(FsError::NoEntry)
    ));
    // A deleted key fails once its entry is no longer fresh; here at once
    // because the fetch is forced by a name never fetched.
    vault.delete_key("signing");
    assert!(fs.lookup(KEYS_INO, OsStr::new("gone.pem")).await.is_err());
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}
