//! Rules of the mount options: defaults, bounds and the shared definition.

use super::*;
use crate::config::{parse_mount_options, ConfigError, Problem};

/// A mount of `myvault` on /mnt with `over`'s settings, validated.
fn mount_with(over: MountOptions) -> Result<MountConfig, FieldError> {
    MountOptions {
        vault: Some("myvault".into()),
        path: Some("/mnt".into()),
        ..Default::default()
    }
    .overlay(over)
    .validate(true, true)
}

#[test]
fn readability_and_lookup_budgets_are_validated() {
    let raw = mount_with;
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
    assert!(
        matches!(
            err.problem,
            Problem::BelowRefreshInterval { value, interval }
                if value == Duration::from_secs(10) && interval == Duration::from_secs(30)
        ),
        "{err:?}"
    );
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
    assert!(
        matches!(
            err.problem,
            Problem::OutOfRange {
                value: 0,
                min: 1,
                max: 4000,
                vault_limit: true
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "max_cold_lookups_per_10s: must be between 1 and 4000 (Key Vault's own limit per vault)"
    );
}

#[test]
fn concurrent_fetches_are_one_definition() {
    let cfg = mount_with(MountOptions::default()).unwrap();
    assert_eq!(cfg.cache.max_concurrent_fetches, 16);
    let (o, _) = parse_mount_options("max_concurrent_fetches=4").unwrap();
    let cfg = mount_with(o).unwrap();
    assert_eq!(cfg.cache.max_concurrent_fetches, 4);
    let file: MountOptions = toml::from_str("max_concurrent_fetches = 300").unwrap();
    let err = mount_with(file).unwrap_err();
    assert!(
        matches!(
            err.problem,
            Problem::OutOfRange {
                value: 300,
                max: 256,
                vault_limit: false,
                ..
            }
        ),
        "{err:?}"
    );
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
    assert!(
        !mount_with(MountOptions::default())
            .unwrap()
            .owner
            .allow_root
    );
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
        let cfg = mount_with(over).unwrap();
        assert!(cfg.owner.allow_root && !cfg.owner.allow_other);
    }
    let (both, _) = parse_mount_options("allow_root,allow_other").unwrap();
    let err = mount_with(both).unwrap_err();
    assert!(
        matches!(err.problem, Problem::RootWithOther) && err.field == "allow_root",
        "{err}"
    );
    // Only the mode bits keep other users out of an allow_root mount.
    for (modes, bits) in [
        ("file_mode=0440", (0o440, 0o500)),
        ("dir_mode=0505", (0o400, 0o505)),
    ] {
        let (o, _) = parse_mount_options(&format!("allow_root,{modes}")).unwrap();
        let err = mount_with(o).unwrap_err();
        assert!(
            matches!(err.problem, Problem::RootWithOpenModes { file_mode, dir_mode } if (file_mode, dir_mode) == bits),
            "{modes}: {err}"
        );
    }
}

#[test]
fn each_bad_setting_has_its_problem() {
    let check = |over: MountOptions| mount_with(over).unwrap_err();
    let e = MountOptions::default().validate(true, true).unwrap_err();
    assert!(e.is("vault", |p| matches!(p, Problem::Required)), "{e:?}");
    assert_eq!(e.to_string(), "vault: is required");
    let e = MountOptions {
        vault: Some("myvault".into()),
        ..Default::default()
    }
    .validate(true, true)
    .unwrap_err();
    assert!(e.is("path", |p| matches!(p, Problem::Required)), "{e:?}");
    // One bad setting each: its field, its problem's variant, and the message it renders
    // (None where another test pins the text).
    type Case = (
        MountOptions,
        &'static str,
        fn(&Problem) -> bool,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            MountOptions { auth: Some("password".into()), ..Default::default() },
            "auth",
            |p| matches!(p, Problem::AuthMode { value } if value == "password"),
            Some("auth: \"password\" is not one of auto, workload-identity, managed-identity, azure-cli, client-secret"),
        ),
        (
            MountOptions { cache_bytes: Some("1KiB".into()), ..Default::default() },
            "cache_bytes",
            |p| matches!(p, Problem::CacheTooSmall { bytes: 1024 }),
            Some("cache_bytes: must be at least 64KiB (one Key Vault secret is up to 25KiB)"),
        ),
        (
            MountOptions { fetch_timeout: Some("0s".into()), ..Default::default() },
            "fetch_timeout",
            |p| matches!(p, Problem::Zero),
            Some("fetch_timeout: must be greater than zero"),
        ),
        (
            MountOptions { refresh_interval: Some("500ms".into()), ..Default::default() },
            "refresh_interval",
            |p| matches!(p, Problem::TooShort { value, min }
                if *value == Duration::from_millis(500) && *min == Duration::from_secs(1)),
            Some("refresh_interval: must be at least 1s"),
        ),
        (
            MountOptions { max_stale: Some("often".into()), ..Default::default() },
            "max_stale",
            |p| matches!(p, Problem::Value(ConfigError::Duration { value }) if value == "often"),
            Some("max_stale: \"often\" is not a duration; use e.g. 500ms, 30s, 10m or 24h"),
        ),
        (
            MountOptions { notice: Some("configmap:ns".into()), ..Default::default() },
            "notice",
            |p| matches!(p, Problem::Value(ConfigError::NoticeSourceSlash { .. })),
            None,
        ),
        (
            MountOptions {
                notice: Some("configmap:ns/name".into()),
                notice_poll_interval: Some("1s".into()),
                ..Default::default()
            },
            "notice_poll_interval",
            |p| matches!(p, Problem::BelowRefreshInterval { .. }),
            None,
        ),
    ];
    for (over, field, is, text) in cases {
        let e = check(over);
        assert!(e.field == field && is(&e.problem), "{field}: {e:?}");
        if let Some(text) = text {
            assert_eq!(e.to_string(), text);
        }
    }
    assert_eq!(
        Problem::NoNodeName.to_string(),
        "is not set and neither NODE_NAME nor the host name is available"
    );
}
