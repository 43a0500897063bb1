//! `akvfs csi` as kubelet drives it: each pod's volume is read with the pod's own identity.
//!
//! The harness (tests/common/csi.rs) plays kubelet over the plugin's unix socket with tokens the
//! emulator mints for chosen service accounts; consumers run in their own mount namespaces like
//! containers. No assertion depends on how long anything took: eventual states are awaited with
//! generous deadlines.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::csi::*;
use common::*;
use tonic::Code;

const LIMIT: Duration = Duration::from_secs(60);
const CLIENT_A: &str = "a1a1a1a1-0000-4000-8000-00000000000a";
const CLIENT_B: &str = "b2b2b2b2-0000-4000-8000-00000000000b";

/// An emulator with `a-only`, `b-only` and `shared`, and the identities of
/// `ns-a/sa-a` (denied b-only) and `ns-b/sa-b` (denied a-only).
fn two_teams() -> (Emulator, Pod, Pod) {
    let emu = emulator_with(&[
        ("a-only", "value-a"),
        ("b-only", "value-b"),
        ("shared", "value-shared"),
    ]);
    let a = Pod::new("ns-a", "sa-a", "app-a-1");
    let b = Pod::new("ns-b", "sa-b", "app-b-1");
    add_identity(&emu, CLIENT_A, &a.subject(), &["b-only"]);
    add_identity(&emu, CLIENT_B, &b.subject(), &["a-only"]);
    (emu, a, b)
}

fn dev(path: &Path) -> u64 {
    std::fs::metadata(path).expect("target reachable").dev()
}

fn refused(r: std::io::Result<String>) -> bool {
    matches!(
        r.map_err(|e| e.raw_os_error()),
        Err(Some(libc::EACCES)) | Err(Some(libc::ENOENT))
    )
}

#[test]
fn each_pod_reads_with_its_own_identity_and_revocation_reaches_only_that_identity() {
    if !can_run() {
        return;
    }
    let (emu, a1, b1) = two_teams();
    let a2 = Pod::new("ns-a", "sa-a", "app-a-2");
    let kubelet = KubeletDir::new();
    let mut plugin = Plugin::start(&emu, &kubelet);
    let va1 = Volume::new(&emu, &kubelet, &a1, CLIENT_A);
    let va2 = Volume::new(&emu, &kubelet, &a2, CLIENT_A);
    let vb1 = Volume::new(&emu, &kubelet, &b1, CLIENT_B);
    for v in [&va1, &va2, &vb1] {
        plugin
            .publish(v)
            .unwrap_or_else(|s| panic!("publish {}: {s:?}\n{}", v.pod.name, plugin.log()));
    }

    assert_eq!(va1.read("a-only").unwrap(), "value-a");
    assert_eq!(va2.read("shared").unwrap(), "value-shared");
    assert_eq!(vb1.read("b-only").unwrap(), "value-b");
    assert!(refused(va1.read("b-only")), "sa-a read b-only");
    assert!(refused(vb1.read("a-only")), "sa-b read a-only");

    // Different identities: different FUSE connections; one identity: one.
    assert_ne!(dev(&va1.target), dev(&vb1.target));
    assert_eq!(dev(&va1.target), dev(&va2.target));
    let (fs, opts) = mount_at(&va1.target).expect("target mounted");
    assert_eq!(fs, "fuse.akvfs");
    for o in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(
            opts.split(',').any(|x| x == o),
            "target options {opts} lack {o}"
        );
    }
    assert_eq!(
        akvfs_mounts_under(&kubelet.state_dir()),
        2,
        "one mount per identity"
    );

    // Revoking sa-a's identity: its files go within the refresh interval
    // (1 s here); sa-b is untouched.
    emu.inner().remove_identity(CLIENT_A).unwrap();
    assert!(
        wait_until(LIMIT, || va1.read("a-only").is_err()
            && va2.read("shared").is_err()),
        "sa-a's files stayed readable after its identity was removed"
    );
    assert_eq!(vb1.read("b-only").unwrap(), "value-b");
    assert_eq!(vb1.read("shared").unwrap(), "value-shared");

    for v in [&va1, &va2, &vb1] {
        plugin.unpublish(v).unwrap();
        assert!(
            mount_at(&v.target).is_none(),
            "{} still mounted",
            v.target.display()
        );
    }
    assert_eq!(akvfs_mounts_under(&kubelet.path), 0);
    // Unpublishing again (or an unknown target) succeeds.
    plugin.unpublish(&va1).unwrap();
    let log = plugin.log();
    assert!(
        !log.contains(&va1.token.clone().unwrap()),
        "a token was logged"
    );
    assert!(!log.contains("value-a"), "a value was logged");
}

#[test]
fn refused_publishes_say_why_and_mount_nothing() {
    if !can_run() {
        return;
    }
    let (emu, a, _) = two_teams();
    let kubelet = KubeletDir::new();
    let mut plugin = Plugin::start(&emu, &kubelet);
    let good = Volume::new(&emu, &kubelet, &a, CLIENT_A);
    plugin.publish(&good).unwrap();

    let other_pod = Pod::new("ns-a", "sa-a", "app-a-x");
    let base = || Volume::new(&emu, &kubelet, &other_pod, CLIENT_A);
    let forger = emulator_with(&[]);
    let with_token = |spec: akvfs_emulator::ServiceAccountToken| {
        let mut v = base();
        v.token = Some(emu.inner().mint_service_account_token(&spec));
        v
    };
    let mut cases: Vec<(&str, Volume, Code, &str)> = Vec::new();
    let mut v = base();
    v.token = None;
    cases.push(("no token", v, Code::Unauthenticated, "tokenRequests"));
    let mut spec = other_pod.token_spec();
    spec.audience = Some("https://kubernetes.default.svc".into());
    cases.push((
        "wrong audience",
        with_token(spec),
        Code::Unauthenticated,
        "audience",
    ));
    let mut spec = other_pod.token_spec();
    spec.lifetime_secs = Some(-30);
    cases.push((
        "expired",
        with_token(spec),
        Code::Unauthenticated,
        "expired",
    ));
    let mut spec = other_pod.token_spec();
    spec.service_account = "default".into();
    cases.push((
        "subject mismatch",
        with_token(spec),
        Code::Unauthenticated,
        "subject",
    ));
    let mut spec = other_pod.token_spec();
    spec.pod = Some(("someone-else".into(), "uid-x".into()));
    cases.push((
        "bound to another pod",
        with_token(spec),
        Code::Unauthenticated,
        "bound to pod",
    ));
    let mut v = base();
    v.readonly = false;
    cases.push(("writable", v, Code::InvalidArgument, "readOnly"));
    let mut v = base();
    v.attributes
        .insert("keyvaultName".into(), "nosuchvault".into());
    cases.push(("unknown vault", v, Code::NotFound, "nosuchvault"));
    let mut v = base();
    v.attributes.insert("objectz".into(), "x".into());
    cases.push(("unknown attribute", v, Code::InvalidArgument, "\"objectz\""));
    let mut v = base();
    v.attributes
        .insert("refresh_interval".into(), "soon".into());
    cases.push(("bad option", v, Code::InvalidArgument, "refresh_interval"));
    // A token signed by someone else, claiming sa-a's subject while sa-a's
    // mount exists: Entra ID refuses it, and it joins nothing.
    let mut v = base();
    v.token = Some(
        forger
            .inner()
            .mint_service_account_token(&other_pod.token_spec()),
    );
    cases.push(("forged", v, Code::PermissionDenied, "refused"));
    let mut v = base();
    v.attributes.insert("clientID".into(), CLIENT_B.into());
    cases.push((
        "another team's identity",
        v,
        Code::PermissionDenied,
        CLIENT_B,
    ));

    for (what, v, code, says) in cases {
        let err = plugin.publish(&v).expect_err(what);
        assert_eq!(err.code(), code, "{what}: {}", err.message());
        assert!(err.message().contains(says), "{what}: {}", err.message());
        assert!(
            mount_at(&v.target).is_none(),
            "{what}: the target was mounted"
        );
    }
    assert_eq!(
        akvfs_mounts_under(&kubelet.state_dir()),
        1,
        "only sa-a's mount"
    );
    // The token may also come in the request's secrets (Kubernetes 1.35).
    let mut v = base();
    v.token_in_secrets = true;
    plugin.publish(&v).unwrap();
    assert_eq!(v.read("a-only").unwrap(), "value-a");
}

#[test]
fn republish_swaps_the_token_and_the_last_unpublish_wipes_the_identity() {
    if !can_run() {
        return;
    }
    let (emu, a, _) = two_teams();
    let kubelet = KubeletDir::new();
    let port = free_port();
    let mut plugin = Plugin::start_with(
        &emu,
        &kubelet,
        &["--metrics-listen".into(), format!("127.0.0.1:{port}")],
    );
    let mut v = Volume::new(&emu, &kubelet, &a, CLIENT_A);
    plugin.publish(&v).unwrap();
    assert_eq!(v.read("a-only").unwrap(), "value-a");
    let before = dev(&v.target);
    let state_mounts = kubelet.state_dir().join("mounts").display().to_string();
    assert!(
        http_get(port, "/metrics").contains(&state_mounts),
        "no metrics for the identity mount"
    );

    // The same token again costs nothing; a rotated one is exchanged once.
    emu.reset_counts();
    plugin.publish(&v).unwrap();
    assert_eq!(emu.counts().get("token_client_assertion"), 0);
    v.token = Some(a.token(&emu));
    plugin.publish(&v).unwrap();
    assert_eq!(emu.counts().get("token_client_assertion"), 1);
    assert_eq!(dev(&v.target), before, "a republish must not remount");
    assert_eq!(v.read("a-only").unwrap(), "value-a");

    plugin.unpublish(&v).unwrap();
    assert!(mount_at(&v.target).is_none());
    assert_eq!(
        akvfs_mounts_under(&kubelet.path),
        0,
        "the identity mount is gone"
    );
    let mounts = std::fs::read_dir(kubelet.state_dir().join("mounts"))
        .unwrap()
        .count();
    assert_eq!(mounts, 0, "the identity's directory is removed");
    assert!(
        !http_get(port, "/metrics").contains(&state_mounts),
        "its metrics stayed"
    );
    // Its values went with it: a new publish reads from the vault again.
    emu.reset_counts();
    let v2 = Volume::new(&emu, &kubelet, &a, CLIENT_A);
    plugin.publish(&v2).unwrap();
    assert_eq!(v2.read("a-only").unwrap(), "value-a");
    assert!(emu.counts().get("get_secret") >= 1);
    // The state directory never holds a token.
    for entry in std::fs::read_dir(kubelet.state_dir().join("targets")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!text.contains(v2.token.as_deref().unwrap()));
        assert!(text.contains(CLIENT_A));
    }
}

#[test]
fn an_fs_group_consumer_reads_as_a_non_root_user() {
    if !can_run() {
        return;
    }
    let (emu, a, _) = two_teams();
    let kubelet = KubeletDir::new();
    // Let other users walk down to the pod directories, as on a node.
    let mut p = kubelet.path.clone();
    while let Some(parent) = p.parent().map(Path::to_path_buf) {
        let _ = Command::new("chmod").arg("o+x").arg(&p).status();
        if parent == Path::new("/tmp") || parent == Path::new("/") {
            break;
        }
        p = parent;
    }
    let mut plugin = Plugin::start(&emu, &kubelet);
    // kubelet passes the fsGroup because the plugin reports VOLUME_MOUNT_GROUP.
    let (node, caps) = plugin.node_info();
    assert_eq!(node, "node-1");
    use akvfs::csi_proto::node_service_capability::rpc::Type as Rpc;
    assert!(caps.contains(&(Rpc::VolumeMountGroup as i32)), "{caps:?}");
    let mut v = Volume::new(&emu, &kubelet, &a, CLIENT_A);
    v.group = Some(4242);
    plugin.publish(&v).unwrap();
    for dir in v.target.parent().unwrap().ancestors() {
        if dir == kubelet.path {
            break;
        }
        let _ = Command::new("chmod").arg("o+x").arg(dir).status();
    }
    let read_as = |groups: &str| {
        Command::new("setpriv")
            .args(["--reuid", "31337", "--regid", "31337", "--groups", groups])
            .arg("cat")
            .arg(v.target.join("a-only"))
            .output()
            .expect("setpriv runs")
    };
    let out = read_as("4242");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "value-a");
    let out = read_as("31337");
    assert!(
        !out.status.success(),
        "a user outside the fsGroup read the secret"
    );
    let meta = std::fs::metadata(v.target.join("a-only")).unwrap();
    assert_eq!(meta.gid(), 4242);
    assert_eq!(meta.mode() & 0o777, 0o440);
}
