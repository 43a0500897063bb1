//! Views through real mounts against the emulator: declared files at chosen
//! paths, every field, allow-listing, a SecretProviderClass read into the
//! same views, version history, rotation and revocation. Time only bounds
//! the waiting, generously.

mod common;
#[path = "certs/support.rs"]
mod support;

use std::io::Read;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use common::*;

const WAIT: Duration = Duration::from_secs(30);

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// Sets each value as a new version, in distinct seconds (`created` has
/// one-second resolution, and history orders by it); returns the ids.
fn versions(emu: &Emulator, name: &str, values: &[&str]) -> Vec<String> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(1100));
            }
            emu.set_secret(name, v)
        })
        .collect()
}

fn errno(m: &Mount, path: &str) -> Option<i32> {
    m.read(path).err().and_then(|e| e.raw_os_error())
}

fn text(m: &Mount, path: &str) -> String {
    String::from_utf8_lossy(&m.read(path).unwrap_or_default()).into_owned()
}

#[test]
fn every_field_of_a_view_and_an_allow_listing_root() {
    let emu = emulator_with(&[
        (
            "db",
            r#"{"user":"app","pass":"s3cr3t","port":5432,"tags":["a"]}"#,
        ),
        ("hexy", "00ff41"),
        ("unlisted", "must stay hidden"),
    ]);
    let blob = base64::engine::general_purpose::STANDARD.encode([0u8, 1, 2, 254, 255]);
    emu.set_secret("blob", &blob);
    let ids = versions(&emu, "plain", &["one", "two", "three", "four"]);
    let (v1, v2) = (&ids[0], &ids[1]);
    // A disabled version is skipped by the history.
    emu.inner().set_enabled("plain", Some(v2), false).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let views = write(
        tmp.path(),
        "app.views.toml",
        &format!(
            r#"
[[view]]
path = "app/db/user"
name = "db"
json_pointer = "/user"
[[view]]
path = "app/db/port"
name = "db"
json_pointer = "/port"
mode = "0440"
[[view]]
path = "app/db/tags"
name = "db"
json_pointer = "/tags"
[[view]]
path = "bin/blob"
name = "blob"
encoding = "base64"
[[view]]
path = "bin/hexy"
name = "hexy"
encoding = "hex"
[[view]]
path = "maybe"
name = "absent"
optional = true
[[view]]
name = "plain"
[[view]]
path = "pinned"
name = "plain"
version = "{v1}"
[[view]]
path = "hist"
name = "plain"
version_history = 3
"#
        ),
    );
    let m = Mount::new(&emu, &["--views", views.to_str().unwrap()]);
    assert_eq!(text(&m, "app/db/user"), "app");
    assert_eq!(text(&m, "app/db/port"), "5432");
    assert_eq!(text(&m, "app/db/tags"), r#"["a"]"#);
    let mode = std::fs::metadata(m.file("app/db/port"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o440);
    let mode = std::fs::metadata(m.file("app/db/user"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o400, "the mount's file mode by default");
    assert_eq!(m.read("bin/blob").unwrap(), [0u8, 1, 2, 254, 255]);
    assert_eq!(m.read("bin/hexy").unwrap(), [0u8, 255, b'A']);
    assert_eq!(text(&m, "plain"), "four");
    assert_eq!(text(&m, "pinned"), "one");

    // optional: the file is absent, and not listed.
    assert_eq!(errno(&m, "maybe"), Some(libc::ENOENT));
    // Allow-listing: only the views, nothing else resolves or lists.
    assert_eq!(names(&m.path), ["app", "bin", "hist", "pinned", "plain"]);
    assert_eq!(names(&m.file("app/db")), ["port", "tags", "user"]);
    emu.reset_counts();
    for hidden in ["unlisted", "db", ".versions", ".certs", ".keys"] {
        assert_eq!(errno(&m, hidden), Some(libc::ENOENT), "{hidden}");
    }
    assert_eq!(
        emu.counts().get("get_secret"),
        0,
        "refused without asking the vault"
    );

    // History: exactly N files, newest first, the disabled one skipped.
    assert_eq!(names(&m.file("hist")), ["0", "1", "2"]);
    assert_eq!(text(&m, "hist/0"), "four");
    assert_eq!(text(&m, "hist/1"), "three");
    assert_eq!(text(&m, "hist/2"), "one");
    assert_eq!(errno(&m, "hist/3"), Some(libc::ENOENT));
}

#[test]
fn a_missing_object_or_a_json_pointer_miss_fails_the_start_and_names_the_view() {
    let emu = emulator_with(&[("db", r#"{"user":"app","pass":"s3cr3t"}"#)]);
    let tmp = tempfile::tempdir().unwrap();
    let start = |views: &str| {
        let file = write(tmp.path(), "v.toml", views);
        let mnt = tmp.path().join("mnt");
        let _ = std::fs::create_dir(&mnt);
        let file = file.display().to_string();
        run(mount_command(
            &emu,
            &wi_env(&emu),
            &mnt,
            &["--views", &file],
        ))
    };
    let out = start("[[view]]\npath = \"conf/db\"\nname = \"nope\"\n");
    assert!(!out.status.success());
    let line = out.error_line();
    assert!(
        line.contains("view conf/db") && line.contains("nope"),
        "{line}"
    );
    assert!(line.contains("optional"), "{line}");

    let out = start("[[view]]\npath = \"pw\"\nname = \"db\"\njson_pointer = \"/password\"\n");
    assert!(!out.status.success());
    let line = out.error_line();
    assert!(
        line.contains("view pw") && line.contains("db") && line.contains("/password"),
        "{line}"
    );
    assert!(
        !out.stderr.contains("s3cr3t") && !out.stderr.contains("app"),
        "{}",
        out.stderr
    );

    let out = start("[[view]]\npath = \"../x\"\nname = \"db\"\n");
    assert!(!out.status.success());
    assert!(out.error_line().contains("path"), "{}", out.error_line());
}

#[test]
fn a_rotation_changes_a_view_file_and_a_revocation_fails_it_closed() {
    let old = format!("old-{}", "o".repeat(5000));
    let emu = emulator_with(&[("db", &old), ("other", "x")]);
    let tmp = tempfile::tempdir().unwrap();
    let views = write(
        tmp.path(),
        "v.toml",
        "[[view]]\npath = \"conf/db\"\nname = \"db\"\n[[view]]\npath = \"other\"\nname = \"other\"\n",
    );
    let m = Mount::new(
        &emu,
        &[
            "--views",
            views.to_str().unwrap(),
            "--refresh-interval",
            "1s",
        ],
    );
    assert_eq!(text(&m, "conf/db"), old);
    let mut f = std::fs::File::open(m.file("conf/db")).unwrap();
    let mut first = vec![0u8; 100];
    f.read_exact(&mut first).unwrap();

    emu.set_secret("db", "new");
    assert!(
        wait_until(WAIT, || text(&m, "conf/db") == "new"),
        "the rotation reached the view"
    );
    assert_eq!(std::fs::metadata(m.file("conf/db")).unwrap().len(), 3);
    // The open file keeps its version.
    let mut rest = Vec::new();
    f.read_to_end(&mut rest).unwrap();
    first.extend_from_slice(&rest);
    assert_eq!(first, old.as_bytes());

    let held = std::fs::File::open(m.file("conf/db")).unwrap();
    emu.delete_secret("db");
    assert!(
        wait_until(WAIT, || errno(&m, "conf/db") == Some(libc::ENOENT)),
        "the deleted secret's view is gone"
    );
    let mut buf = [0u8; 8];
    assert!(
        wait_until(WAIT, || held.read_at(&mut buf, 0).is_err()),
        "a descriptor opened before fails closed: {:?} {}",
        held.read_at(&mut buf, 0),
        m.log()
    );
    assert_eq!(text(&m, "other"), "x");
}

#[test]
fn a_secret_provider_class_gives_the_same_files_as_the_equivalent_views() {
    let emu = emulator_with(&[("db-password", "pw"), ("hexy", "414243")]);
    versions(&emu, "plain", &["one", "two", "three"]);
    let tmp = tempfile::tempdir().unwrap();
    let spc = write(
        tmp.path(),
        "spc.yaml",
        &format!(
            r#"apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: app
spec:
  provider: azure
  parameters:
    usePodIdentity: "false"
    keyvaultName: "{}"
    tenantId: "{}"
    objects: |
      array:
        - |
          objectName: db-password
          objectType: secret
          objectAlias: db/password
          filePermission: "0440"
        - |
          objectName: hexy
          objectType: secret
          objectEncoding: hex
        - |
          objectName: plain
          objectType: secret
          objectVersionHistory: 2
"#,
            emu.info().vault_url,
            emu.info().tenant_id
        ),
    );
    let views = write(
        tmp.path(),
        "v.toml",
        r#"
[[view]]
path = "db/password"
name = "db-password"
mode = "0440"
[[view]]
name = "hexy"
encoding = "hex"
[[view]]
name = "plain"
version_history = 2
"#,
    );
    let a = Mount::new(&emu, &["--spc", spc.to_str().unwrap()]);
    let b = Mount::new(&emu, &["--views", views.to_str().unwrap()]);
    for m in [&a, &b] {
        assert_eq!(names(&m.path), ["db", "hexy", "plain"]);
        assert_eq!(names(&m.file("plain")), ["0", "1"]);
    }
    for f in ["db/password", "hexy", "plain/0", "plain/1"] {
        assert_eq!(a.read(f).unwrap(), b.read(f).unwrap(), "{f}");
        let mode = |m: &Mount| std::fs::metadata(m.file(f)).unwrap().permissions().mode();
        assert_eq!(mode(&a), mode(&b), "{f}");
    }
    assert_eq!(text(&a, "db/password"), "pw");
    assert_eq!(text(&a, "hexy"), "ABC");
    assert_eq!(text(&a, "plain/0"), "three");
}

#[test]
fn certificate_and_key_views_beside_the_whole_vault() {
    let emu = emulator_with(&[("plain", "value"), ("shadowed", "secret")]);
    let tmp = tempfile::tempdir().unwrap();
    let pfx = support::make_chain(tmp.path(), "rsa");
    support::import(&emu, "web", &pfx);
    let views = write(
        tmp.path(),
        "v.toml",
        r#"
[[view]]
path = "tls/leaf.pem"
name = "web"
type = "cert"
[[view]]
path = "tls/tls.key"
name = "web"
type = "cert"
part = "tls.key"
[[view]]
path = "tls/signing.pem"
name = "web"
type = "key"
[[view]]
path = "tls/signing.jwk"
name = "web"
type = "key"
part = "jwk"
[[view]]
path = "web.pem"
name = "web"
[[view]]
path = "shadowed"
name = "plain"
"#,
    );
    let m = Mount::new(
        &emu,
        &["--views", views.to_str().unwrap(), "--root", "vault"],
    );
    assert_eq!(
        m.read("tls/leaf.pem").unwrap(),
        m.read(".certs/web/leaf.crt").unwrap()
    );
    assert_eq!(
        m.read("tls/tls.key").unwrap(),
        m.read(".certs/web/tls.key").unwrap()
    );
    assert_eq!(
        m.read("tls/signing.pem").unwrap(),
        m.read(".keys/web.pem").unwrap()
    );
    assert_eq!(
        m.read("tls/signing.jwk").unwrap(),
        m.read(".keys/web.jwk").unwrap()
    );
    // A secret view of a certificate's secret: PEM, key first, as the CSI
    // provider writes it.
    assert_eq!(
        m.read("web.pem").unwrap(),
        m.read(".certs/web/tls.pem").unwrap()
    );
    // The whole vault is there too; a view hides a secret of its name.
    assert_eq!(text(&m, "shadowed"), "value");
    let listed = names(&m.path);
    for n in ["plain", "shadowed", "tls", "web", "web.pem"] {
        assert!(listed.contains(&n.to_string()), "{n} in {listed:?}");
    }
    assert_eq!(listed.iter().filter(|n| *n == "shadowed").count(), 1);
}
