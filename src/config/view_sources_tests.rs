//! Where views come from: views files, SecretProviderClasses, `-o`
//! options and config files, without mounts.

use crate::config::spc::parse_spc;
use crate::config::views::RawView;
use crate::config::views::{validate_views, ViewObject, ViewRoot};
use crate::config::views_error::{ViewError, ViewSourceError};
use crate::config::{parse_mount_options, FieldError, MountOptions, Problem};

use super::ViewsFile;

const VAULT: &str = "https://myvault.vault.azure.net";

#[test]
fn unknown_fields_are_refused_in_every_source() {
    let toml_err =
        toml::from_str::<toml::Table>("[[view]]\npath = \"a\"\nname = \"b\"\ncolour = 1\n")
            .map(|t| toml::Value::Table(t).try_into::<ViewsFile>())
            .unwrap()
            .unwrap_err();
    assert!(toml_err.to_string().contains("colour"), "{toml_err}");

    let spc = "array:\n  - |\n    objectName: a\n    objectType: secret\n    objectColour: red\n";
    let e = parse_spc(spc, "spc").unwrap_err().to_string();
    assert!(e.contains("objects entry #1"), "{e}");
    assert!(e.contains("objectColour"), "{e}");

    let manifest = "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nspec:\n  provider: azure\n  parameters:\n    keyvaultName: myvault\n    frobnicate: \"true\"\n    objects: |\n      array:\n        - |\n          objectName: a\n          objectType: secret\n";
    let e = parse_spc(manifest, "spc").unwrap_err().to_string();
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

    let e = parse_spc("array:\n  - |\n    objectName: a\n", "spc")
        .unwrap_err()
        .to_string();
    assert!(e.contains("objectType is required"), "{e}");
    let e = parse_spc("kind: ConfigMap\nspec: {}\n", "spc")
        .unwrap_err()
        .to_string();
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
    assert!(
        e.is("root", |p| matches!(p, Problem::RootWithoutViews)),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "root: views shows only declared views, and none is declared (add views, spc or [[mount.view]])"
    );
    let e = parse_mount_options("view=x").unwrap_err();
    assert!(
        matches!(e, crate::config::ConfigError::OptionViews { .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("views=FILE"), "{e}");
    let missing = base
        .clone()
        .overlay(MountOptions {
            spc: Some(dir.path().join("nope.yaml")),
            ..Default::default()
        })
        .validate(true, true)
        .unwrap_err();
    assert_eq!(missing.field, "spc");
    let Problem::ViewSource(cause @ ViewSourceError::SpcRead { path, .. }) = &missing.problem
    else {
        panic!("{missing:?}");
    };
    assert_eq!(*path, dir.path().join("nope.yaml"));
    // A wrapped cause renders as itself.
    assert_eq!(missing.problem.to_string(), cause.to_string());
    let e = base
        .clone()
        .overlay(MountOptions {
            root: Some("all".into()),
            ..Default::default()
        })
        .validate(true, true)
        .unwrap_err();
    assert!(
        matches!(
            &e,
            FieldError {
                field: "root",
                problem: Problem::ViewSource(ViewSourceError::Root { value })
            } if value == "all"
        ),
        "{e:?}"
    );
    let twice = base
        .overlay(MountOptions {
            views: Some(f.clone()),
            view: Some(vec![RawView {
                path: Some("a/b".into()),
                name: Some("other".into()),
                ..Default::default()
            }]),
            ..Default::default()
        })
        .validate(true, true)
        .unwrap_err();
    assert!(
        matches!(
            &twice,
            FieldError {
                field: "view",
                problem: Problem::View(ViewError::Duplicate { path, .. })
            } if path == "a/b"
        ),
        "{twice:?}"
    );
    assert_eq!(
        twice.to_string(),
        "view: view \"a/b\": path: \"a/b\" is declared twice"
    );
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

#[test]
fn a_secret_provider_class_names_its_vault_for_the_class_only() {
    let manifest = |vault: &str, object_extra: &str| {
        format!(
            "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nspec:\n  provider: azure\n  parameters:\n    keyvaultName: {vault}\n    objects: |\n      array:\n        - |\n          objectName: a\n          objectType: secret\n{object_extra}"
        )
    };
    // keyvaultName applies to every object; another vault than the mount's
    // is read from side by side with it.
    let v = validate_views(
        parse_spc(&manifest("othervault", ""), "spc").unwrap(),
        VAULT,
    )
    .unwrap();
    assert_eq!(
        v[0].vault.as_deref(),
        Some("https://othervault.vault.azure.net")
    );
    let v = validate_views(parse_spc(&manifest("myvault", ""), "spc").unwrap(), VAULT).unwrap();
    assert_eq!(v[0].vault, None);
    // An object cannot name a vault (the provider has no such field).
    for field in ["keyvaultName", "vault", "vaultName"] {
        let e = parse_spc(
            &manifest("myvault", &format!("          {field}: othervault\n")),
            "spc",
        )
        .unwrap_err();
        assert!(
            matches!(&e, ViewSourceError::SpcObjectVault { entry: 1, .. }),
            "{field}: {e:?}"
        );
        assert!(e.to_string().contains("keyvaultName of the class"), "{e}");
    }
    // A bad keyvaultName is refused like the mount's vault, naming the view.
    let e = validate_views(
        parse_spc(&manifest("not_a_vault", ""), "spc").unwrap(),
        VAULT,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("vault") && e.contains("not_a_vault"), "{e}");
}

#[test]
fn source_errors_have_their_variants() {
    let dir = tempfile::tempdir().unwrap();
    let e = super::load_views_file(&dir.path().join("absent.toml")).unwrap_err();
    assert!(matches!(e, ViewSourceError::ViewsFileRead { .. }), "{e:?}");
    let f = dir.path().join("v.toml");
    std::fs::write(&f, "# nothing\n").unwrap();
    let e = super::load_views_file(&f).unwrap_err();
    assert!(matches!(e, ViewSourceError::ViewsFileEmpty { .. }), "{e:?}");
    std::fs::write(&f, "[[view]]\npath = 1\n").unwrap();
    let e = super::load_views_file(&f).unwrap_err();
    assert!(
        matches!(e, ViewSourceError::ViewsFileSyntax { line: Some(2), .. }),
        "{e:?}"
    );
    let e = super::parse_root("all").unwrap_err();
    assert!(matches!(e, ViewSourceError::Root { .. }), "{e:?}");
    assert!(e.to_string().contains("views (only the views)"), "{e}");
    let e = crate::config::spc::load_spc_file(&dir.path().join("absent.yaml")).unwrap_err();
    assert!(matches!(e, ViewSourceError::SpcRead { .. }), "{e:?}");
    let e = parse_spc("kind: SecretProviderClass\nspec:\n  provider: gcp\n", "spc").unwrap_err();
    assert!(matches!(e, ViewSourceError::SpcProvider { .. }), "{e:?}");
    let e = parse_spc(
        "array:\n  - |\n    objectName: a\n    objectType: secret\n    objectVersionHistory: x\n",
        "spc",
    )
    .unwrap_err();
    assert!(
        matches!(e, ViewSourceError::SpcHistory { entry: 1, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("objects entry #1 (a)"), "{e}");
}
