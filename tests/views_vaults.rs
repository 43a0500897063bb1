//! Views of several vaults in one mount, through real mounts against one
//! emulator serving two vaults (one Entra ID): the files are each vault's
//! bytes, a rotation in the other vault reaches its view, revoking the
//! identity on that vault fails its views closed while the mount's own keep
//! working, and bad or unknown vaults fail the start naming view and vault.
//! Time only bounds the waiting, generously.

mod common;
#[path = "certs/support.rs"]
#[allow(dead_code)]
mod support;
#[path = "vaults/support.rs"]
mod vaults;

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use common::*;
use vaults::*;

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn one_mount_reads_two_vaults_side_by_side_and_follows_each() {
    let emu = two_vaults();
    let b = vault_b(&emu);
    let b_url = b.info().vault_url.clone();
    emu.set_secret("db", "a-db");
    emu.set_secret("only-a", "a-only");
    let old = format!("b-db-{}", "o".repeat(3000));
    b.set_secret("db", &old).unwrap();
    b.set_secret("token", r#"{"user":"svc","pass":"b-pass"}"#)
        .unwrap();
    b.set_secret("other", "b-other").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    let views = format!(
        "[[mount.view]]\npath = \"a/db\"\nname = \"db\"\n\
         [[mount.view]]\npath = \"b/db\"\nname = \"db\"\nvault = \"{b_url}\"\n\
         [[mount.view]]\npath = \"b/user\"\nname = \"token\"\njson_pointer = \"/user\"\nvault = \"{b_url}\"\n\
         [[mount.view]]\npath = \"b/other\"\nname = \"other\"\nvault = \"{b_url}\"\n\
         [[mount.view]]\npath = \"b/maybe\"\nname = \"only-a\"\noptional = true\nvault = \"{b_url}\"\n"
    );
    let file = config(
        &emu,
        tmp.path(),
        &mnt,
        "refresh_interval = \"1s\"\nmax_unverified = \"2s\"",
        &views,
    );
    let m = run_config(&emu, &file, &mnt);

    // Each file holds what its own vault holds, byte for byte.
    assert_eq!(m.read("a/db").unwrap(), b"a-db");
    assert_eq!(m.read("b/db").unwrap(), old.as_bytes());
    assert_eq!(m.read("b/user").unwrap(), b"svc");
    assert_eq!(m.read("b/other").unwrap(), b"b-other");
    // A name only A holds is not served from A's cache for a view of B:
    // the optional view is absent.
    assert_eq!(errno(&m, "b/maybe"), Some(libc::ENOENT));
    let mut top: Vec<String> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    top.sort();
    assert_eq!(top, ["a", "b"]);
    let b_gets = b.counts().get("get_secret");
    assert!(b_gets >= 3, "views of B read B: {b_gets}");

    // A rotation in B reaches its view without a remount; an open file
    // keeps its version.
    let mut held = std::fs::File::open(m.file("b/db")).unwrap();
    let mut first = vec![0u8; 10];
    held.read_exact(&mut first).unwrap();
    b.set_secret("db", "b-db-new").unwrap();
    assert!(
        wait_until(WAIT, || text(&m, "b/db") == "b-db-new"),
        "the rotation in B reached the view: {}",
        m.log()
    );
    let mut rest = Vec::new();
    held.read_to_end(&mut rest).unwrap();
    first.extend_from_slice(&rest);
    assert_eq!(first, old.as_bytes());
    assert_eq!(m.read("a/db").unwrap(), b"a-db");

    // Revoking the identity's get on B fails B's views closed (EACCES),
    // open descriptors included, within the bound; A's view keeps working.
    let open_b = std::fs::File::open(m.file("b/other")).unwrap();
    let client_id = emu.info().client_id.clone();
    b.revoke(&client_id, &["get"]).unwrap();
    assert!(
        wait_until(WAIT, || errno(&m, "b/other") == Some(libc::EACCES)),
        "B's view fails closed: {:?} {}",
        m.read("b/other"),
        m.log()
    );
    let mut buf = [0u8; 4];
    assert!(
        wait_until(WAIT, || open_b.read_at(&mut buf, 0).is_err()),
        "a descriptor opened before fails too"
    );
    // Each secret's readability is proven on its own schedule, all within
    // the bound.
    assert!(wait_until(WAIT, || errno(&m, "b/db") == Some(libc::EACCES)));
    assert_eq!(m.read("a/db").unwrap(), b"a-db");
    assert!(
        m.log().contains(&b_url),
        "the log names vault B: {}",
        m.log()
    );
    assert!(!m.log().contains("b-db-new") && !m.log().contains("b-pass"));

    // Access back: the views read again.
    b.grant(&client_id, &["get"]).unwrap();
    assert!(
        wait_until(WAIT, || text(&m, "b/other") == "b-other"),
        "B's views read again once access is back"
    );
}

#[test]
fn the_root_of_a_vault_mount_shows_only_its_own_vault() {
    let emu = two_vaults();
    let b = vault_b(&emu);
    emu.set_secret("mine", "a");
    b.set_secret("theirs", "b").unwrap();
    b.set_secret("mine", "b-mine").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    let views = format!(
        "[[mount.view]]\npath = \"from-b\"\nname = \"mine\"\nvault = \"{}\"\n",
        b.info().vault_url
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = config(&emu, tmp.path(), &mnt, "root = \"vault\"", &views);
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        format!("metrics_listen = \"127.0.0.1:{port}\"\n{text}"),
    )
    .unwrap();
    let m = run_config(&emu, &file, &mnt);
    let mut top: Vec<String> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    top.sort();
    assert_eq!(top, ["from-b", "mine"]);
    assert_eq!(m.read("mine").unwrap(), b"a");
    assert_eq!(m.read("from-b").unwrap(), b"b-mine");
    assert_eq!(errno(&m, "theirs"), Some(libc::ENOENT));

    // Metrics per vault: the other vault's calls and cache carry its label,
    // beside the mount's; readiness counts the one mount.
    let get = |path: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    };
    let metrics = get("/metrics");
    let b_label = format!(
        "vault=\"{}\"",
        b.info().vault_url.trim_start_matches("https://")
    );
    let a_label = format!(
        "vault=\"{}\"",
        emu.info().vault_url.trim_start_matches("https://")
    );
    for label in [&a_label, &b_label] {
        assert!(
            metrics.lines().any(|l| l.starts_with("akvfs_mount_up{")
                && l.contains(label.as_str())
                && l.ends_with(" 1")),
            "{label}: {metrics}"
        );
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("akvfs_cache_misses_total{") && l.contains(label.as_str())),
            "{label}: {metrics}"
        );
    }
    let ready = get("/readyz");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(ready.contains("1 mounts serving"), "{ready}");
}

#[test]
fn a_secret_provider_class_of_the_other_vault_beside_inline_views() {
    let emu = two_vaults();
    let b = vault_b(&emu);
    emu.set_secret("db", "from-a");
    b.set_secret("db", "from-b").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    let spc = tmp.path().join("spc.yaml");
    std::fs::write(
        &spc,
        format!(
            "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nspec:\n  provider: azure\n  parameters:\n    keyvaultName: \"{}\"\n    objects: |\n      array:\n        - |\n          objectName: db\n          objectType: secret\n          objectAlias: b-db\n",
            b.info().vault_url
        ),
    )
    .unwrap();
    let file = config(
        &emu,
        tmp.path(),
        &mnt,
        &format!("spc = \"{}\"", spc.display()),
        "[[mount.view]]\npath = \"a-db\"\nname = \"db\"\n",
    );
    let m = run_config(&emu, &file, &mnt);
    assert_eq!(m.read("a-db").unwrap(), b"from-a");
    assert_eq!(m.read("b-db").unwrap(), b"from-b");
}

#[test]
fn certificate_key_and_history_views_of_the_other_vault_match_that_vault() {
    let emu = two_vaults();
    let b = vault_b(&emu);
    let tmp = tempfile::tempdir().unwrap();
    let pfx = support::make_chain(tmp.path(), "rsa");
    b.add_certificate_version(
        "web",
        &akvfs_emulator::SeedCertVersion {
            pfx: Some(pfx),
            ..Default::default()
        },
    )
    .unwrap();
    b.set_secret("h", "one").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    b.set_secret("h", "two").unwrap();
    // Vault A holds the same names with other content.
    emu.set_secret("h", "a-h");
    let b_url = b.info().vault_url.clone();
    let views = tmp.path().join("v.toml");
    std::fs::write(
        &views,
        format!(
            "[[view]]\npath = \"tls/tls.key\"\nname = \"web\"\ntype = \"cert\"\npart = \"tls.key\"\nvault = \"{b_url}\"\n\
             [[view]]\npath = \"tls/leaf.crt\"\nname = \"web\"\ntype = \"cert\"\nvault = \"{b_url}\"\n\
             [[view]]\npath = \"signing.pem\"\nname = \"web\"\ntype = \"key\"\nvault = \"{b_url}\"\n\
             [[view]]\npath = \"hist\"\nname = \"h\"\nversion_history = 2\nvault = \"{b_url}\"\n\
             [[view]]\npath = \"a-h\"\nname = \"h\"\n"
        ),
    )
    .unwrap();
    let m = Mount::new(&emu, &["--views", views.to_str().unwrap()]);
    // What B holds, through a mount of B itself.
    let direct_dir = tmp.path().join("b");
    std::fs::create_dir(&direct_dir).unwrap();
    let mut cmd = akvfs(&wi_env(&emu));
    cmd.arg("mount")
        .arg(&b_url)
        .arg(&direct_dir)
        .arg("--foreground")
        .args(conn_args(&emu));
    let direct = Mount::from_command(cmd, &direct_dir, None);
    for (view, file) in [
        ("tls/tls.key", ".certs/web/tls.key"),
        ("tls/leaf.crt", ".certs/web/leaf.crt"),
        ("signing.pem", ".keys/web.pem"),
    ] {
        let got = m.read(view).unwrap();
        assert!(!got.is_empty(), "{view}");
        assert_eq!(got, direct.read(file).unwrap(), "{view}");
    }
    assert_eq!(text(&m, "hist/0"), "two");
    assert_eq!(text(&m, "hist/1"), "one");
    assert_eq!(text(&m, "a-h"), "a-h");
}
