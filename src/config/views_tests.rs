//! Validation of views, one by one and as a set, without mounts.

use super::*;

const VAULT: &str = "https://myvault.vault.azure.net";

fn view(path: &str, name: &str) -> RawView {
    RawView {
        path: Some(path.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

fn check(views: Vec<RawView>) -> Result<Vec<ViewSpec>, String> {
    validate_views(views, VAULT).map_err(|e| e.to_string())
}

#[test]
fn bad_paths_are_refused_with_the_reason() {
    for (path, why) in [
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("a//b", "empty component"),
        ("a/", "empty component"),
        ("a/../b", ". or .."),
        ("./a", ". or .."),
        (".versions/x", "collides"),
        (".certs", "collides"),
        (".keys/a", "collides"),
        ("a\u{1}b", "control"),
    ] {
        let e = check(vec![view(path, "db")]).unwrap_err();
        assert!(e.contains(why), "{path:?}: {e}");
        assert!(e.contains("path"), "{e}");
    }
    // Other dot names are fine.
    assert!(check(vec![view(".env", "db")]).is_ok());
}

#[test]
fn duplicates_and_file_directory_clashes_are_refused() {
    let e = check(vec![view("a/b", "x"), view("a/b", "y")]).unwrap_err();
    assert!(e.contains("declared twice"), "{e}");
    let e = check(vec![view("a", "x"), view("a/b", "y")]).unwrap_err();
    assert!(e.contains("cannot also hold views"), "{e}");
    let e = check(vec![view("a/b", "y"), view("a", "x")]).unwrap_err();
    assert!(e.contains("directory holding other views"), "{e}");
    let hist = RawView {
        version_history: Some(3),
        ..view("h", "x")
    };
    let e = check(vec![hist, view("h/0", "y")]).unwrap_err();
    assert!(e.contains("version history"), "{e}");
    assert_eq!(
        check(vec![view("a/b", "x"), view("a/c", "y"), view("d", "z")])
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn every_field_is_checked_and_named() {
    let bad = |r: RawView, field: &str| {
        let e = check(vec![r]).unwrap_err();
        assert!(e.contains(&format!("{field}:")), "{field}: {e}");
        assert!(e.starts_with("view "), "{e}");
    };
    bad(
        RawView {
            name: None,
            ..view("p", "x")
        },
        "name",
    );
    bad(view("p", "bad_name"), "name");
    bad(
        RawView {
            kind: Some("blob".into()),
            ..view("p", "x")
        },
        "type",
    );
    bad(
        RawView {
            kind: Some("cert".into()),
            part: Some("tls.der".into()),
            ..view("p", "x")
        },
        "part",
    );
    bad(
        RawView {
            kind: Some("key".into()),
            part: Some("der".into()),
            ..view("p", "x")
        },
        "part",
    );
    bad(
        RawView {
            part: Some("tls.crt".into()),
            ..view("p", "x")
        },
        "part",
    );
    bad(
        RawView {
            format: Some("der".into()),
            ..view("p", "x")
        },
        "format",
    );
    bad(
        RawView {
            kind: Some("cert".into()),
            format: Some("pem".into()),
            ..view("p", "x")
        },
        "format",
    );
    bad(
        RawView {
            encoding: Some("rot13".into()),
            ..view("p", "x")
        },
        "encoding",
    );
    bad(
        RawView {
            kind: Some("key".into()),
            encoding: Some("hex".into()),
            ..view("p", "x")
        },
        "encoding",
    );
    bad(
        RawView {
            json_pointer: Some("db".into()),
            ..view("p", "x")
        },
        "json_pointer",
    );
    bad(
        RawView {
            kind: Some("cert".into()),
            json_pointer: Some("/a".into()),
            ..view("p", "x")
        },
        "json_pointer",
    );
    bad(
        RawView {
            version: Some("../x".into()),
            ..view("p", "x")
        },
        "version",
    );
    bad(
        RawView {
            version_history: Some(0),
            ..view("p", "x")
        },
        "version_history",
    );
    bad(
        RawView {
            version_history: Some(101),
            ..view("p", "x")
        },
        "version_history",
    );
    bad(
        RawView {
            version_history: Some(2),
            version: Some("abc".into()),
            ..view("p", "x")
        },
        "version_history",
    );
    bad(
        RawView {
            kind: Some("key".into()),
            version_history: Some(2),
            ..view("p", "x")
        },
        "version_history",
    );
    bad(
        RawView {
            mode: Some("999".into()),
            ..view("p", "x")
        },
        "mode",
    );
    bad(
        RawView {
            vault: Some("not a vault".into()),
            ..view("p", "x")
        },
        "vault",
    );

    let ok = check(vec![RawView {
        kind: Some("cert".into()),
        part: Some("tls.key".into()),
        mode: Some("0440".into()),
        optional: Some(true),
        vault: Some("myvault".into()),
        version: Some("latest".into()),
        ..view("tls/key", "web")
    }])
    .unwrap();
    assert_eq!(ok[0].object, ViewObject::Cert("tls.key"));
    assert_eq!(ok[0].mode, Some(0o440));
    assert_eq!(ok[0].version, None);
    assert!(ok[0].optional);
    assert_eq!(ok[0].path, ["tls", "key"]);
}

#[test]
fn views_may_read_from_other_vaults_named_like_the_mount_s() {
    let other = |path: &str, vault: &str| RawView {
        vault: Some(vault.into()),
        ..view(path, "db")
    };
    let v = check(vec![
        view("a", "db"),
        other("b", "othervault"),
        other("c", "https://othervault.vault.azure.net/"),
        other("d", "myvault"),
        other("e", "https://127.0.0.1:8443"),
    ])
    .unwrap();
    let vaults: Vec<Option<&str>> = v.iter().map(|s| s.vault.as_deref()).collect();
    assert_eq!(
        vaults,
        [
            None,
            Some("https://othervault.vault.azure.net"),
            Some("https://othervault.vault.azure.net"),
            // The mount's own vault, however written, is no other vault.
            None,
            Some("https://127.0.0.1:8443"),
        ]
    );
    // Names and URLs are checked as the mount's vault is, naming the view.
    for bad in [
        "my_vault",
        "http://kv.vault.azure.net",
        "https://kv/x",
        "-kv",
    ] {
        let e = check(vec![other("p", bad)]).unwrap_err();
        assert!(e.starts_with("view \"p\": vault: "), "{bad}: {e}");
    }
    let e = validate_views(vec![other("p", "ab")], VAULT).unwrap_err();
    assert!(
        matches!(&e, ViewError::Field { field: "vault", .. }),
        "{e:?}"
    );
    // At most MAX_VAULTS vaults, the mount's own included.
    let many: Vec<RawView> = (0..MAX_VAULTS)
        .map(|i| other(&format!("v{i}"), &format!("vault{i}x")))
        .collect();
    let e = validate_views(many, VAULT).unwrap_err();
    assert!(matches!(&e, ViewError::TooManyVaults { .. }), "{e:?}");
    assert!(e.to_string().contains("at most 8 vaults"), "{e}");
    let fits: Vec<RawView> = (1..MAX_VAULTS)
        .map(|i| other(&format!("v{i}"), &format!("vault{i}x")))
        .chain(std::iter::once(other("again", "vault1x")))
        .collect();
    assert_eq!(validate_views(fits, VAULT).unwrap().len(), MAX_VAULTS);
}

#[test]
fn set_errors_have_their_variants() {
    let e = validate_views(vec![view("a/b", "x"), view("a/b", "y")], VAULT).unwrap_err();
    assert!(matches!(e, ViewError::Duplicate { .. }), "{e:?}");
    let e = validate_views(vec![view("a", "x"), view("a/b", "y")], VAULT).unwrap_err();
    assert!(matches!(e, ViewError::NotADirectory { .. }), "{e:?}");
    let e = validate_views(vec![view("/a", "x")], VAULT).unwrap_err();
    assert!(
        matches!(
            e,
            ViewError::Path {
                source: PathError::Absolute(_),
                ..
            }
        ),
        "{e:?}"
    );
    let e = validate_views(vec![view("a", "x"); MAX_VIEWS + 1], VAULT).unwrap_err();
    assert!(matches!(e, ViewError::TooMany { count } if count == MAX_VIEWS + 1));
}
