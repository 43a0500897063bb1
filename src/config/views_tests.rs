//! Parsing and validation of views, without mounts.

use super::*;
use crate::config::spc::parse_spc;
use crate::config::view_sources::ViewsFile;
use crate::config::{parse_mount_options, MountOptions};

const VAULT: &str = "https://myvault.vault.azure.net";

fn view(path: &str, name: &str) -> RawView {
    RawView {
        path: Some(path.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

fn check(views: Vec<RawView>) -> Result<Vec<ViewSpec>, String> {
    validate_views(views, VAULT)
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
    bad(
        RawView {
            vault: Some("othervault".into()),
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
fn unknown_fields_are_refused_in_every_source() {
    let toml_err =
        toml::from_str::<toml::Table>("[[view]]\npath = \"a\"\nname = \"b\"\ncolour = 1\n")
            .map(|t| toml::Value::Table(t).try_into::<ViewsFile>())
            .unwrap()
            .unwrap_err();
    assert!(toml_err.to_string().contains("colour"), "{toml_err}");

    let spc = "array:\n  - |\n    objectName: a\n    objectType: secret\n    objectColour: red\n";
    let e = parse_spc(spc, "spc").unwrap_err();
    assert!(e.contains("objects entry #1"), "{e}");
    assert!(e.contains("objectColour"), "{e}");

    let manifest = "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nspec:\n  provider: azure\n  parameters:\n    keyvaultName: myvault\n    frobnicate: \"true\"\n    objects: |\n      array:\n        - |\n          objectName: a\n          objectType: secret\n";
    let e = parse_spc(manifest, "spc").unwrap_err();
    assert!(e.contains("frobnicate"), "{e}");
}

#[test]
fn a_secret_provider_class_becomes_the_equivalent_views() {
    let manifest = r#"apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: app
spec:
  provider: azure
  parameters:
    usePodIdentity: "false"
    clientID: "00000000-0000-0000-0000-000000000000"
    keyvaultName: myvault
    tenantId: "11111111-1111-1111-1111-111111111111"
    objects: |
      array:
        - |
          objectName: db-password
          objectType: secret
          objectAlias: db/password
          objectVersion: ""
          filePermission: "0440"
        - |
          objectName: blob
          objectType: secret
          objectEncoding: base64
          objectVersionHistory: 3
        - |
          objectName: web
          objectType: cert
        - |
          objectName: signing
          objectType: key
          objectVersion: 0123456789abcdef0123456789abcdef
        - |
          objectName: web
          objectType: secret
          objectAlias: web.pfx
          objectFormat: pfx
          objectVersionHistory: 1
"#;
    let from_spc = validate_views(parse_spc(manifest, "spc").unwrap(), VAULT).unwrap();
    let toml_text = r#"
[[view]]
path = "db/password"
name = "db-password"
mode = "0440"
vault = "myvault"
[[view]]
name = "blob"
encoding = "base64"
version_history = 3
vault = "myvault"
[[view]]
name = "web"
type = "cert"
vault = "myvault"
[[view]]
name = "signing"
type = "key"
version = "0123456789abcdef0123456789abcdef"
vault = "myvault"
[[view]]
path = "web.pfx"
name = "web"
format = "pfx"
vault = "myvault"
"#;
    let file: ViewsFile = toml::from_str(toml_text).unwrap();
    let from_toml = validate_views(file.view, VAULT).unwrap();
    assert_eq!(from_spc, from_toml);
    assert_eq!(from_spc[2].object, ViewObject::Cert("leaf.crt"));
    assert_eq!(from_spc[3].object, ViewObject::Key { jwk: false });
    assert_eq!(from_spc[1].history, Some(3));
    assert_eq!(
        from_spc[4].history, None,
        "history 1 is one plain file, as the provider does"
    );

    // The objects string alone gives the same views, without a vault.
    let objects = "array:\n  - |\n    objectName: db-password\n    objectType: secret\n    objectAlias: db/password\n";
    let v = parse_spc(objects, "spc").unwrap();
    assert_eq!(v[0].path.as_deref(), Some("db/password"));
    assert_eq!(v[0].vault, None);

    let e = parse_spc("array:\n  - |\n    objectName: a\n", "spc").unwrap_err();
    assert!(e.contains("objectType is required"), "{e}");
    let e = parse_spc("kind: ConfigMap\nspec: {}\n", "spc").unwrap_err();
    assert!(e.contains("not SecretProviderClass"), "{e}");
}

#[test]
fn views_come_from_options_with_an_allow_listing_root_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("v.toml");
    std::fs::write(&f, "[[view]]\npath = \"a/b\"\nname = \"db\"\n").unwrap();
    let (o, _) = parse_mount_options(&format!("views={}", f.display())).unwrap();
    let base = MountOptions {
        vault: Some("myvault".into()),
        path: Some("/mnt".into()),
        ..Default::default()
    };
    let cfg = base
        .clone()
        .overlay(o.clone())
        .validate(true, true)
        .unwrap();
    assert_eq!(cfg.views.len(), 1);
    assert_eq!(cfg.view_root, ViewRoot::Views);
    let cfg = base
        .clone()
        .overlay(MountOptions {
            root: Some("vault".into()),
            ..o
        })
        .validate(true, true)
        .unwrap();
    assert_eq!(cfg.view_root, ViewRoot::Vault);
    let cfg = base.clone().validate(true, true).unwrap();
    assert_eq!(cfg.view_root, ViewRoot::Vault);
    let e = base
        .clone()
        .overlay(MountOptions {
            root: Some("views".into()),
            ..Default::default()
        })
        .validate(true, true)
        .unwrap_err();
    assert_eq!(e.field, "root");
    let e = parse_mount_options("view=x").unwrap_err();
    assert!(
        matches!(e, crate::config::ConfigError::OptionViews { .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("views=FILE"), "{e}");
    let missing = base
        .overlay(MountOptions {
            spc: Some(dir.path().join("nope.yaml")),
            ..Default::default()
        })
        .validate(true, true)
        .unwrap_err();
    assert_eq!(missing.field, "spc");
    assert!(missing.problem.contains("nope.yaml"), "{missing:?}");
}

#[test]
fn a_config_file_declares_views_inline_per_mount() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("config.toml");
    std::fs::write(
        &f,
        "[[mount]]\nvault = \"myvault\"\npath = \"/mnt/a\"\nroot = \"vault\"\n\
         [[mount.view]]\npath = \"db/user\"\nname = \"db\"\njson_pointer = \"/user\"\n\
         [[mount]]\nvault = \"myvault\"\npath = \"/mnt/b\"\n",
    )
    .unwrap();
    let cfg = crate::config::load_config_file(&f).unwrap();
    assert_eq!(cfg.mounts[0].views.len(), 1);
    assert_eq!(
        cfg.mounts[0].views[0].json_pointer.as_deref(),
        Some("/user")
    );
    assert_eq!(cfg.mounts[0].view_root, ViewRoot::Vault);
    assert!(cfg.mounts[1].views.is_empty());

    std::fs::write(
        &f,
        "[[mount]]\nvault = \"myvault\"\npath = \"/mnt/a\"\n[[mount.view]]\npath = \"x\"\nname = \"db\"\nalias = \"y\"\n",
    )
    .unwrap();
    let e = crate::config::load_config_file(&f).unwrap_err();
    assert!(
        matches!(
            e,
            crate::config::ConfigError::FileSyntax { line: Some(_), .. }
        ),
        "{e:?}"
    );
    let e = e.to_string();
    assert!(e.contains("alias") && e.contains("line"), "{e}");
}
