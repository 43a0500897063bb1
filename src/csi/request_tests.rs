//! Tests of reading a publish request: attributes, the node's cache maximum, the token's place.

use super::*;
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
        matches!(&err, Refusal::Setting(e) if e.field == "cache_bytes"),
        "{err}"
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
        matches!(&err, Refusal::Setting(e) if e.field == "max_stale"),
        "{err}"
    );
    assert!(err.to_string().starts_with("volume attribute max_stale"));
    let err = parse(request(&[], "staff"), &node()).err().unwrap();
    assert!(err.to_string().contains("numeric group id"), "{err}");
}
