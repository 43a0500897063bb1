//! `akvfs csi` volumes with a SecretProviderClass's `objects`: the pod sees exactly the files the
//! objects name, read with its own identity; volumes of one identity with different objects are
//! different mounts, so one pod's list never widens or narrows another's.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use common::csi::*;
use common::*;
use tonic::Code;

const LIMIT: Duration = Duration::from_secs(60);
const CLIENT_A: &str = "a1a1a1a1-0000-4000-8000-00000000000a";

/// The objects string as a SecretProviderClass carries it in `parameters.objects`.
const OBJECTS: &str = r#"array:
  - |
    objectName: db-password
    objectType: secret
    objectAlias: app/db
    filePermission: "0600"
  - |
    objectName: config
    objectType: secret
    objectAlias: port
    objectEncoding: utf-8
"#;

/// One more object, which the vault does not hold.
const MISSING: &str = "  - |\n    objectName: not-there\n    objectType: secret\n";

#[test]
fn a_volumes_objects_are_its_files_and_other_lists_get_their_own_mount() {
    if !can_run() {
        return;
    }
    let emu = emulator_with(&[
        ("db-password", "s3cret"),
        ("config", "8080"),
        ("other", "not-listed"),
        ("denied", "no"),
    ]);
    let pod = Pod::new("ns-a", "sa-a", "app-a-1");
    let pod2 = Pod::new("ns-a", "sa-a", "app-a-2");
    add_identity(&emu, CLIENT_A, &pod.subject(), &["denied"]);
    let kubelet = KubeletDir::new();
    let mut plugin = Plugin::start(&emu, &kubelet);

    // A missing object that is not optional refuses the publish, naming it, and mounts nothing.
    let mut listed = Volume::new(&emu, &kubelet, &pod, CLIENT_A);
    listed
        .attributes
        .insert("objects".into(), format!("{OBJECTS}{MISSING}"));
    let status = plugin
        .publish(&listed)
        .expect_err("a missing object was accepted");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(
        status.message().contains("not-there"),
        "{:?}\n{}",
        status,
        plugin.log()
    );
    assert!(mount_at(&listed.target).is_none());

    listed.attributes.insert("objects".into(), OBJECTS.into());
    let pub_res = plugin.publish(&listed);
    if let Err(s) = &pub_res {
        panic!("publish with objects: {s:?}\n{}", plugin.log());
    }
    assert_eq!(listed.read("app/db").unwrap(), "s3cret");
    assert_eq!(listed.read("port").unwrap(), "8080");
    let mode = std::fs::metadata(listed.target.join("app/db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "filePermission kept");
    // Only the listed objects: the rest of the vault is not there, and costs no GET.
    let gets = emu.counts().get("get_secret");
    for name in ["other", "denied", "db-password", "not-there"] {
        assert!(
            matches!(
                listed.read(name).map_err(|e| e.raw_os_error()),
                Err(Some(libc::ENOENT))
            ),
            "{name} is visible in an objects volume"
        );
    }
    assert_eq!(
        emu.counts().get("get_secret"),
        gets,
        "an unlisted name reached the vault"
    );

    // The same identity without objects: its own mount, the whole vault.
    let whole = Volume::new(&emu, &kubelet, &pod2, CLIENT_A);
    plugin
        .publish(&whole)
        .unwrap_or_else(|s| panic!("publish without objects: {s:?}\n{}", plugin.log()));
    assert_eq!(whole.read("other").unwrap(), "not-listed");
    assert!(whole.read("app/db").is_err());
    let dev = |v: &Volume| std::fs::metadata(&v.target).unwrap().dev();
    assert_ne!(
        dev(&listed),
        dev(&whole),
        "two object lists share one mount"
    );
    assert_eq!(akvfs_mounts_under(&kubelet.state_dir()), 2);

    // A rotation reaches the view without a new publish.
    emu.set_secret("db-password", "rotated");
    assert!(
        wait_until(LIMIT, || listed.read("app/db").ok().as_deref()
            == Some("rotated")),
        "the view kept the old value"
    );

    // Objects that do not parse are refused before anything is mounted.
    let mut bad = Volume::new(
        &emu,
        &kubelet,
        &Pod::new("ns-a", "sa-a", "app-a-3"),
        CLIENT_A,
    );
    bad.attributes.insert("objects".into(), "array: [".into());
    let status = plugin.publish(&bad).expect_err("bad objects were accepted");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("objects"), "{status:?}");
    assert!(mount_at(&bad.target).is_none());

    for v in [&listed, &whole] {
        plugin.unpublish(v).unwrap();
    }
    assert_eq!(akvfs_mounts_under(&kubelet.path), 0);
    assert!(!plugin.log().contains("s3cret"), "a value was logged");
}
