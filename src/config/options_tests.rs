//! Rules of the mount options: defaults, bounds and the shared definition.

use super::*;
use crate::config::parse_mount_options;

#[test]
fn readability_and_lookup_budgets_are_validated() {
    let raw = |over: MountOptions| {
        MountOptions {
            vault: Some("myvault".into()),
            path: Some("/mnt".into()),
            ..Default::default()
        }
        .overlay(over)
        .validate(true, true)
    };
    let cfg = raw(MountOptions::default()).unwrap();
    assert_eq!(cfg.refresh.max_unverified, Duration::from_secs(600));
    assert_eq!(cfg.cache.max_cold_lookups_per_10s, 100);
    let cfg = raw(MountOptions {
        max_unverified: Some("2m".into()),
        max_cold_lookups_per_10s: Some(7),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(cfg.refresh.max_unverified, Duration::from_secs(120));
    assert_eq!(cfg.cache.max_cold_lookups_per_10s, 7);
    let err = raw(MountOptions {
        max_unverified: Some("10s".into()),
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(
        err.as_flag(),
        "--max-unverified: must be at least the refresh interval"
    );
    let err = raw(MountOptions {
        max_cold_lookups_per_10s: Some(0),
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(err.field, "max_cold_lookups_per_10s");
}

#[test]
fn concurrent_fetches_are_one_definition() {
    let base = || MountOptions {
        vault: Some("myvault".into()),
        path: Some("/mnt".into()),
        ..Default::default()
    };
    let cfg = base().validate(true, true).unwrap();
    assert_eq!(cfg.cache.max_concurrent_fetches, 16);
    let (o, _) = parse_mount_options("max_concurrent_fetches=4").unwrap();
    let cfg = base().overlay(o).validate(true, true).unwrap();
    assert_eq!(cfg.cache.max_concurrent_fetches, 4);
    let file: MountOptions = toml::from_str("max_concurrent_fetches = 300").unwrap();
    let err = base().overlay(file).validate(true, true).unwrap_err();
    assert_eq!(
        err.as_flag(),
        "--max-concurrent-fetches: must be between 1 and 256"
    );
}

#[test]
fn option_types_follow_the_fields() {
    let (o, mlock) =
        parse_mount_options("allow_other,uid=7,file_mode=0440,ca_file=/ca.pem,no_mlock").unwrap();
    assert!(!mlock);
    assert_eq!(o.allow_other, Some(true));
    assert_eq!(o.uid, Some(7));
    assert_eq!(o.file_mode.as_deref(), Some("0440"));
    assert_eq!(o.ca_file, Some(PathBuf::from("/ca.pem")));
    let e = parse_mount_options("uid=x").unwrap_err();
    assert!(
        matches!(e, crate::config::ConfigError::OptionNumber { .. }),
        "{e:?}"
    );
    assert_eq!(e.to_string(), "-o uid=x: not a number");
    assert!(parse_mount_options("bogus=1")
        .unwrap_err()
        .to_string()
        .contains("unknown field"));
}

#[test]
fn allow_root_is_one_definition_and_excludes_allow_other() {
    let base = || MountOptions {
        vault: Some("myvault".into()),
        path: Some("/mnt".into()),
        ..Default::default()
    };
    assert!(!base().validate(true, true).unwrap().owner.allow_root);
    // The same field from fstab's -o, a config file and the command line.
    let (o, _) = parse_mount_options("allow_root").unwrap();
    let file: MountOptions = toml::from_str("allow_root = true").unwrap();
    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        options: MountOptions,
    }
    let flags = <Flags as clap::Parser>::try_parse_from(["akvfs", "--allow-root"]).unwrap();
    for over in [o, file, flags.options] {
        let cfg = base().overlay(over).validate(true, true).unwrap();
        assert!(cfg.owner.allow_root && !cfg.owner.allow_other);
    }
    let (both, _) = parse_mount_options("allow_root,allow_other").unwrap();
    let err = base().overlay(both).validate(true, true).unwrap_err();
    assert_eq!(err.field, "allow_root");
    assert!(err.to_string().contains("allow_other"), "{err}");
    // Only the mode bits keep other users out of an allow_root mount.
    for modes in ["file_mode=0440", "dir_mode=0505"] {
        let (o, _) = parse_mount_options(&format!("allow_root,{modes}")).unwrap();
        let err = base().overlay(o).validate(true, true).unwrap_err();
        assert_eq!(err.field, "allow_root", "{modes}");
    }
}
