//! Tests of reading a publish request: attributes, the node's cache maximum, the token's place.

use super::*;
use crate::config::{ConfigError, FieldError, Problem};
use crate::csi::proto::volume_capability::MountVolume;
use crate::csi::proto::VolumeCapability;

fn request(extra: &[(&str, &str)], group: &str) -> NodePublishVolumeRequest {
    let mut ctx: HashMap<String, String> = [
        ("keyvaultName", "myvault"),
        ("clientID", "c0ffee00-0000-4000-8000-000000000001"),
        (POD_NAME, "p"),
        (POD_NAMESPACE, "ns"),
        (POD_UID, "u"),
        (SERVICE_ACCOUNT, "sa"),
        (EPHEMERAL, "true"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        ctx.insert(k.to_string(), v.to_string());
    }
    let mut secrets = HashMap::new();
    secrets.insert(
        TOKENS_KEY.to_string(),
        format!("{{\"{AUDIENCE}\":{{\"token\":\"t.t.t\"}}}}"),
    );
    NodePublishVolumeRequest {
        volume_id: "v".into(),
        target_path: "/pods/u/mount".into(),
        readonly: true,
        volume_capability: Some(VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume {
                volume_mount_group: group.into(),
                ..Default::default()
            })),
            access_mode: None,
        }),
        secrets,
        volume_context: ctx,
        ..Default::default()
    }
}

fn node() -> NodeDefaults {
    NodeDefaults {
        tenant_id: Some("tenant".into()),
        ca_file: None,
        verify_challenge_resource: true,
        max_cache_bytes: 16 << 20,
    }
}

#[test]
fn attributes_map_to_one_mount_configuration() {
    let p = parse(request(&[("file_mode", "0400")], "2000"), &node())
        .ok()
        .unwrap();
    assert_eq!(p.vault_url, "https://myvault.vault.azure.net");
    assert_eq!(p.tenant_id, "tenant");
    assert_eq!(p.group, Some(2000));
    assert_eq!(p.config.owner.gid, 2000);
    // The group can always read.
    assert_eq!(p.config.owner.file_mode, 0o440);
    assert!(p.config.owner.allow_other);
    assert_eq!(p.token.as_str(), "t.t.t");
    let p = parse(request(&[], ""), &node()).ok().unwrap();
    assert_eq!((p.config.owner.gid, p.config.owner.file_mode), (0, 0o444));
}

#[test]
fn a_volume_caps_its_cache_within_the_node_maximum() {
    let p = parse(request(&[], ""), &node()).ok().unwrap();
    assert_eq!(
        p.config.cache.max_bytes,
        16 << 20,
        "no cache_bytes: the maximum"
    );
    let p = parse(request(&[("cache_bytes", "1MiB")], ""), &node())
        .ok()
        .unwrap();
    assert_eq!(p.config.cache.max_bytes, 1 << 20);
    let p = parse(request(&[("cache_bytes", "16MiB")], ""), &node())
        .ok()
        .unwrap();
    assert_eq!(p.config.cache.max_bytes, 16 << 20);
    let err = parse(request(&[("cache_bytes", "1GiB")], ""), &node())
        .err()
        .unwrap();
    assert!(
        matches!(err, Refusal::CacheCap { asked, max, .. } if asked == 1 << 30 && max == 16 << 20),
        "{err}"
    );
    // The usual floor still holds.
    let err = parse(request(&[("cache_bytes", "1KiB")], ""), &node())
        .err()
        .unwrap();
    assert!(
        matches!(&err, Refusal::Setting(e) if e.is("cache_bytes", |p| matches!(p, Problem::CacheTooSmall { bytes: 1024 }))),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "volume attribute cache_bytes: must be at least 64KiB (one Key Vault secret is up to 25KiB)"
    );
}

#[test]
fn node_level_settings_cannot_be_set_by_a_volume() {
    for key in [
        "uid",
        "ca_file",
        "auth",
        "allow_other",
        "client_id",
        "nonempty",
        // Node files: a pod author cannot make the plugin read them.
        "views",
        "spc",
    ] {
        let err = parse(request(&[(key, "1")], ""), &node()).err().unwrap();
        assert!(
            matches!(&err, Refusal::UnknownAttribute { key: k } if k == key),
            "{key}: {err}"
        );
    }
    let err = parse(request(&[("max_stale", "often")], ""), &node())
        .err()
        .unwrap();
    assert!(
        matches!(
            &err,
            Refusal::Setting(FieldError {
                field: "max_stale",
                problem: Problem::Value(ConfigError::Duration { .. })
            })
        ),
        "{err}"
    );
    assert!(err.to_string().starts_with("volume attribute max_stale"));
    let err = parse(request(&[], "staff"), &node()).err().unwrap();
    assert!(err.to_string().contains("numeric group id"), "{err}");
}

const OBJECTS_YAML: &str = "array:\n  - |\n    objectName: db-password\n    objectType: secret\n    objectAlias: app/db\n    filePermission: \"0600\"\n  - |\n    objectName: tls\n    objectType: cert\n";

#[test]
fn a_volumes_objects_become_its_views_and_part_of_its_identity_key() {
    let p = parse(request(&[(OBJECTS, OBJECTS_YAML)], "2000"), &node())
        .map_err(|e| e.to_string())
        .unwrap();
    let views = &p.config.views;
    assert_eq!(views.len(), 2);
    assert_eq!(views[0].path, ["app", "db"]);
    assert_eq!(views[0].name.as_str(), "db-password");
    // filePermission kept, and made group-readable for the fsGroup.
    assert_eq!(views[0].mode, Some(0o640));
    assert_eq!(views[1].mode, None);
    // Only the views are shown unless the volume asks for the whole vault.
    assert_eq!(p.config.view_root, crate::config::ViewRoot::Views);
    assert_eq!(
        p.options.get(OBJECTS).map(String::as_str),
        Some(OBJECTS_YAML)
    );
    let whole = parse(
        request(&[(OBJECTS, OBJECTS_YAML), ("root", "vault")], ""),
        &node(),
    )
    .ok()
    .unwrap();
    assert_eq!(whole.config.view_root, crate::config::ViewRoot::Vault);
    assert_eq!(whole.config.views[0].mode, Some(0o600));
}

#[test]
fn bad_objects_are_refused_naming_the_attribute() {
    for bad in ["array: [", "array:\n  - |\n    objectType: secret\n"] {
        let err = parse(request(&[(OBJECTS, bad)], ""), &node())
            .err()
            .unwrap();
        assert!(
            matches!(&err, Refusal::Objects(_)) && err.to_string().contains("objects"),
            "{bad:?}: {err}"
        );
    }
    let huge = "x".repeat(MAX_OBJECTS_BYTES + 1);
    let err = parse(request(&[(OBJECTS, &huge)], ""), &node())
        .err()
        .unwrap();
    assert!(
        matches!(err, Refusal::ObjectsTooLarge { bytes, .. } if bytes == huge.len()),
        "{err}"
    );
    let err = parse(request(&[("secretProviderClass", "spc")], ""), &node())
        .err()
        .unwrap();
    assert!(matches!(err, Refusal::ProviderClass), "{err}");
}
