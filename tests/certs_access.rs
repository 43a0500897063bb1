//! Certificates and keys through real mounts against the emulator, for what
//! an identity may read and for how keys follow the vault: an identity
//! allowed certificates but not secrets reads the public leaf and is refused
//! the private files; a rotated key shows up without a remount; a deleted or
//! disabled key fails closed, open descriptors included.

mod common;
#[path = "certs/support.rs"]
mod support;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use akvfs_emulator::SeedKeyVersion;
use common::*;
use support::{import, make_chain, read};

fn errno(p: &Path) -> Option<i32> {
    std::fs::read(p).err().and_then(|e| e.raw_os_error())
}

#[test]
fn a_certificate_reader_without_secret_get_reads_the_leaf_and_not_the_key() {
    let emu = emulator_with(&[("plain", "v")]);
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    import(&emu, "web", &make_chain(d, "rsa"));
    // Secret list stays (the listing), secret get goes; certificate get stays.
    emu.inner().revoke(&emu.info().client_id, &["get"]).unwrap();
    let m = Mount::new(&emu, &["--refresh-interval", "1s"]);
    let dir = m.file(".certs/web");

    assert_eq!(
        std::fs::read(dir.join("leaf.crt")).unwrap(),
        read(d, "leaf.crt"),
        "the leaf comes from the certificate's public part"
    );
    for part in ["tls.key", "tls.pem", "tls.crt", "ca.crt", "cert.pfx"] {
        assert_eq!(
            errno(&dir.join(part)),
            Some(libc::EACCES),
            "{part} needs the secret"
        );
    }
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["leaf.crt"]);
    assert_eq!(errno(&dir.join("other.crt")), Some(libc::ENOENT));
    assert_eq!(errno(&m.file("plain")), Some(libc::EACCES));

    // Without the certificate permission either, the leaf is refused too.
    emu.inner()
        .set_object_permissions(
            &emu.info().client_id,
            Some(akvfs_emulator::ObjectPermissions::none()),
            None,
        )
        .unwrap();
    let m2 = Mount::new(&emu, &["--refresh-interval", "1s"]);
    assert_eq!(errno(&m2.file(".certs/web/leaf.crt")), Some(libc::EACCES));
}

fn ec_key() -> SeedKeyVersion {
    SeedKeyVersion {
        kty: Some("EC".into()),
        crv: Some("P-256".into()),
        ..Default::default()
    }
}

#[test]
fn a_rotated_key_shows_up_without_a_remount_and_a_deleted_one_fails_closed() {
    let emu = emulator_with(&[]);
    emu.inner().add_key_version("signing", &ec_key()).unwrap();
    emu.inner().add_key_version("other", &ec_key()).unwrap();
    let m = Mount::new(&emu, &["--refresh-interval", "1s"]);
    let pem = m.file(".keys/signing.pem");
    let jwk = m.file(".keys/signing.jwk");
    let first_pem = std::fs::read(&pem).unwrap();
    let first_jwk = std::fs::read(&jwk).unwrap();
    let held = std::fs::File::open(&pem).unwrap();

    emu.inner().add_key_version("signing", &ec_key()).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || std::fs::read(&jwk)
            .is_ok_and(|b| b != first_jwk)),
        "the rotated key's JWK shows up within the refresh interval"
    );
    assert_ne!(std::fs::read(&pem).unwrap(), first_pem);
    // The descriptor opened before keeps the version it opened.
    let mut buf = vec![0u8; first_pem.len()];
    held.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, first_pem);

    let other = m.file(".keys/other.pem");
    let other_bytes = std::fs::read(&other).unwrap();
    emu.inner().delete_key("signing").unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || errno(&pem).is_some()),
        "a deleted key's file fails"
    );
    assert!(errno(&jwk).is_some());
    assert!(
        held.read_at(&mut buf, 0).is_err(),
        "an open descriptor stops reading a deleted key"
    );
    assert_eq!(std::fs::read(&other).unwrap(), other_bytes);

    // Losing keys/get fails the others closed too.
    emu.inner()
        .set_object_permissions(
            &emu.info().client_id,
            None,
            Some(akvfs_emulator::ObjectPermissions::none()),
        )
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || errno(&other)
            == Some(libc::EACCES)),
        "a key no longer readable fails with EACCES"
    );
}
