//! `akvfs watch` against the emulator and the Kubernetes fake (tests/kubefake):
//! leader election and handover, publishing only on change, metadata only,
//! deletes and disables, 409 on the Lease and on the notice; and the fake's
//! list/watch behaviours (resourceVersion, bookmarks, 410 -> relist) through
//! kube-rs itself.

mod common;
#[path = "kubefake/mod.rs"]
mod kubefake;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use kubefake::KubeFake;
use serde_json::{json, Value};

const NS: &str = "akvfs";
const NOTICE: &str = "/api/v1/namespaces/akvfs/configmaps/akvfs-notice-127";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/akvfs/leases/akvfs-watch";

struct Watcher {
    child: Child,
    log: PathBuf,
}

impl Watcher {
    fn start(emu: &Emulator, kubeconfig: &Path, dir: &Path, id: &str) -> Watcher {
        Watcher::start_with(emu, kubeconfig, dir, id, &[])
    }

    fn start_with(
        emu: &Emulator,
        kubeconfig: &Path,
        dir: &Path,
        id: &str,
        extra: &[&str],
    ) -> Watcher {
        let log = dir.join(format!("{id}.log"));
        let mut env = sp_env(emu);
        env.push(("KUBECONFIG".into(), kubeconfig.display().to_string()));
        env.push(("AKVFS_LOG".into(), "debug".into()));
        let child = akvfs(&env)
            .args(["watch", "--vault", &emu.info().vault_url])
            .args(conn_args(emu))
            .args(["--fleet-size", "1000", "--limit-per-10s", "400"])
            .args(["--interval", "500ms", "--namespace", NS, "--identity", id])
            .args(["--lease-duration", "3s", "--lease-renew-deadline", "2s"])
            .args(["--lease-retry-period", "300ms"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("akvfs watch starts");
        Watcher { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The notice's `secrets`, parsed.
fn secrets(fake: &KubeFake) -> Option<Value> {
    let cm = fake.get(NOTICE)?;
    serde_json::from_str(cm["data"]["secrets"].as_str()?).ok()
}

fn holder(fake: &KubeFake) -> Option<String> {
    fake.get(LEASE)?["spec"]["holderIdentity"]
        .as_str()
        .map(str::to_string)
}

/// Writes (create/update/patch) to the notice ConfigMap seen by the fake.
fn notice_writes(fake: &KubeFake) -> usize {
    fake.requests()
        .iter()
        .filter(|r| {
            r["resource"] == "configmaps"
                && ["create", "update", "patch"].contains(&r["verb"].as_str().unwrap_or(""))
                && r["code"].is_null()
        })
        .count()
}

/// Waits until the current unix second is past `name`'s `updated`, so that a
/// new version gets a different `updated` (Key Vault's resolution is 1 s).
fn next_second(emu: &Emulator, name: &str) {
    let t = emu.secret_updated(name).unwrap();
    wait_until("the clock moves past the last version", || unix_now() > t);
}

fn setup() -> (KubeFake, tempfile::TempDir, PathBuf) {
    let fake = KubeFake::start(1.0);
    let dir = tempfile::tempdir().unwrap();
    let cfg = fake.kubeconfig(dir.path(), NS);
    (fake, dir, cfg)
}

#[test]
fn one_leader_publishes_and_a_handover_loses_no_change() {
    let emu = emulator_with(&[("alpha", "value-alpha-1"), ("beta", "value-beta-1")]);
    let (fake, dir, cfg) = setup();
    let mut w1 = Watcher::start(&emu, &cfg, dir.path(), "w1");
    wait_until("w1 publishes both secrets", || {
        secrets(&fake).is_some_and(|s| s["alpha"].is_object() && s["beta"].is_object())
    });
    assert_eq!(holder(&fake).as_deref(), Some("w1"));
    let w2 = Watcher::start(&emu, &cfg, dir.path(), "w2");
    wait_until("w2 sees that w1 leads", || {
        w2.log().contains("another replica leads")
    });
    assert!(
        !w2.log().contains("published a notice") && !w2.log().contains("leading:"),
        "a follower must not publish:\n{}",
        w2.log()
    );

    // Kill the leader, then rotate while nobody leads.
    next_second(&emu, "alpha");
    w1.kill();
    emu.set_secret("alpha", "value-alpha-2");
    let updated = emu.secret_updated("alpha").unwrap();
    wait_until("the new leader publishes the rotation", || {
        secrets(&fake).is_some_and(|s| s["alpha"]["updated"] == json!(updated))
    });
    assert_eq!(holder(&fake).as_deref(), Some("w2"));
    assert!(w2.log().contains("leading:"), "{}", w2.log());
    let lease = fake.get(LEASE).unwrap();
    assert!(lease["spec"]["leaseTransitions"].as_i64().unwrap() >= 1);

    // A leader stopped with SIGTERM gives the Lease up at once.
    let w3 = Watcher::start(&emu, &cfg, dir.path(), "w3");
    wait_until("w3 sees that w2 leads", || {
        w3.log().contains("another replica leads")
    });
    let pid = nix::unistd::Pid::from_raw(w2.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    wait_until("w3 takes over", || holder(&fake).as_deref() == Some("w3"));
    assert!(w2.log().contains("giving the lease up"), "{}", w2.log());
}

#[test]
fn publishes_metadata_only_and_only_on_change() {
    let emu = emulator_with(&[("alpha", "value-alpha-1"), ("beta", "value-beta-1")]);
    let spec = akvfs_emulator::SecretSpec {
        value: "value-gamma-1".into(),
        content_type: Some("text/plain".into()),
        exp: Some(1_900_000_000),
        ..Default::default()
    };
    emu.inner().set_secret_with("gamma", spec).unwrap();
    let (fake, dir, cfg) = setup();
    let _w = Watcher::start(&emu, &cfg, dir.path(), "solo");
    wait_until("the notice appears", || {
        secrets(&fake).is_some_and(|s| s["alpha"].is_object() && s["beta"].is_object())
    });
    let cm = fake.get(NOTICE).unwrap();
    let rv = cm["metadata"]["resourceVersion"].clone();
    assert_eq!(cm["metadata"]["labels"]["app.kubernetes.io/name"], "akvfs");
    assert_eq!(
        cm["metadata"]["labels"]["app.kubernetes.io/component"],
        "notice"
    );
    assert_eq!(cm["data"]["vault"], json!(emu.info().vault_url));
    assert_eq!(cm["data"]["fleetSize"], "1000");
    assert_eq!(cm["data"]["limitPer10s"], "400");
    assert!(cm["data"]["heartbeat"]
        .as_str()
        .unwrap()
        .parse::<i64>()
        .is_ok());
    assert!(cm["data"]["listedAt"]
        .as_str()
        .unwrap()
        .parse::<i64>()
        .is_ok());
    let alpha = &secrets(&fake).unwrap()["alpha"];
    assert_eq!(
        alpha["updated"],
        json!(emu.secret_updated("alpha").unwrap())
    );
    assert_eq!(alpha["enabled"], true);
    assert!(alpha["contentType"].is_null() && alpha["expires"].is_null());
    let gamma = &secrets(&fake).unwrap()["gamma"];
    assert_eq!(gamma["contentType"], "text/plain");
    assert_eq!(gamma["expires"], 1_900_000_000);

    // Three more listings with nothing changed: no write.
    let lists = emu.counts().get("list_secrets");
    wait_until("three more listings", || {
        emu.counts().get("list_secrets") >= lists + 3
    });
    assert_eq!(fake.get(NOTICE).unwrap()["metadata"]["resourceVersion"], rv);
    assert_eq!(notice_writes(&fake), 1, "{:?}", fake.requests());

    // A disable, with the first write answered 409: re-read, then written.
    fake.fail("update", "configmaps", 409, 1);
    emu.set_enabled("beta", false);
    wait_until("the disable is published", || {
        secrets(&fake).is_some_and(|s| s["beta"]["enabled"] == false)
    });
    assert!(fake
        .requests()
        .iter()
        .any(|r| r["resource"] == "configmaps" && r["code"] == 409));
    // A delete.
    emu.delete_secret("alpha");
    wait_until("the delete is published", || {
        secrets(&fake).is_some_and(|s| s.get("alpha").is_none() && s["beta"].is_object())
    });
    assert_eq!(notice_writes(&fake), 3, "{:?}", fake.requests());

    // Metadata only: no GET of a value, ever; no value in the object.
    let counts = emu.counts();
    assert_eq!(counts.get("get_secret"), 0);
    assert_eq!(counts.get("get_secret_version"), 0);
    let text = fake.get(NOTICE).unwrap().to_string();
    assert!(!text.contains("value-"), "{text}");
}

#[test]
fn heartbeat_rewrites_an_unchanged_notice() {
    let emu = emulator_with(&[("alpha", "value-alpha-1")]);
    let (fake, dir, cfg) = setup();
    let _w = Watcher::start_with(&emu, &cfg, dir.path(), "solo", &["--heartbeat", "1s"]);
    let beat = |fake: &KubeFake| -> Option<i64> {
        fake.get(NOTICE)?["data"]["heartbeat"]
            .as_str()?
            .parse()
            .ok()
    };
    wait_until("the notice appears", || beat(&fake).is_some());
    let first = beat(&fake).unwrap();
    let before = secrets(&fake).unwrap();
    wait_until("the heartbeat is rewritten", || {
        beat(&fake).is_some_and(|b| b > first)
    });
    assert_eq!(secrets(&fake).unwrap(), before);
    assert_eq!(emu.counts().get("get_secret"), 0);
}

#[test]
fn lease_conflicts_and_expired_holders_are_handled() {
    let emu = emulator_with(&[("alpha", "value-alpha-1")]);
    let (fake, dir, cfg) = setup();
    // A Lease left behind by a replica that died: it expires by our clock.
    let (code, _) = fake.api(
        "POST",
        "/apis/coordination.k8s.io/v1/namespaces/akvfs/leases",
        Some(json!({"metadata": {"name": "akvfs-watch"}, "spec": {
            "holderIdentity": "ghost", "leaseDurationSeconds": 1,
            "renewTime": "2020-01-01T00:00:00.000000Z", "leaseTransitions": 4}})),
    );
    assert_eq!(code, 201);
    // The first takeover attempt loses a race (409 Conflict).
    fake.fail("update", "leases", 409, 1);
    let w = Watcher::start(&emu, &cfg, dir.path(), "w1");
    wait_until("the watcher takes over and publishes", || {
        secrets(&fake).is_some_and(|s| s["alpha"].is_object())
    });
    assert_eq!(holder(&fake).as_deref(), Some("w1"));
    assert!(fake
        .requests()
        .iter()
        .any(|r| r["resource"] == "leases" && r["code"] == 409));
    assert_eq!(fake.get(LEASE).unwrap()["spec"]["leaseTransitions"], 5);

    // A 409 on a renewal: leadership is dropped at once, then taken again.
    fake.fail("update", "leases", 409, 1);
    wait_until("the watcher drops leadership", || {
        w.log().contains("lost the lease")
    });
    wait_until("the watcher leads again", || {
        w.log().matches("leading:").count() >= 2
    });
    next_second(&emu, "alpha");
    emu.set_secret("alpha", "value-alpha-2");
    let updated = emu.secret_updated("alpha").unwrap();
    wait_until("a change after re-election is published", || {
        secrets(&fake).is_some_and(|s| s["alpha"]["updated"] == json!(updated))
    });
}

/// The fake's list/watch semantics through kube-rs's own client and watcher,
/// as the nodes use them.
#[test]
fn kube_watch_resumes_with_bookmarks_and_relists_after_410() {
    use futures::{StreamExt, TryStreamExt};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
    use kube::runtime::watcher;

    let (fake, _dir, _cfg) = setup();
    // The Kubernetes client's TLS uses rustls's process-wide provider.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut config = kube::Config::new(fake.url.parse().unwrap());
        config.default_namespace = NS.into();
        let client = kube::Client::try_from(config).unwrap();
        let api: Api<ConfigMap> = Api::namespaced(client, NS);
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "n"}, "data": {"k": "1"}})).unwrap();
        let created = api.create(&PostParams::default(), &cm).await.unwrap();
        let rv = created.metadata.resource_version.clone().unwrap();

        // A raw watch from the create's resourceVersion: an update, then a
        // bookmark with a resourceVersion, both parsed by kube-rs's types.
        let mut raw = api
            .watch(&WatchParams::default().timeout(30), &rv)
            .await
            .unwrap()
            .boxed();
        let patch = Patch::Merge(json!({"data": {"k": "2"}}));
        api.patch("n", &PatchParams::default(), &patch)
            .await
            .unwrap();
        let mut saw_modified = false;
        loop {
            match raw.try_next().await.unwrap().expect("the watch stays open") {
                WatchEvent::Modified(cm) => {
                    saw_modified = cm.data.unwrap()["k"] == "2";
                }
                WatchEvent::Bookmark(b) => {
                    assert!(!b.metadata.resource_version.is_empty());
                    break;
                }
                other => panic!("unexpected event {other:?}"),
            }
        }
        assert!(saw_modified);

        // kube-rs's watcher: list, watch; a 410 makes it relist.
        let wc = watcher::Config::default().fields("metadata.name=n");
        // The stream is polled (so it watches) on its own task.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let watched = api.clone();
        tokio::spawn(async move {
            let mut events = watcher(watched, wc).boxed();
            while let Some(e) = events.next().await {
                let seen = match e {
                    Ok(watcher::Event::InitDone) => Some("init-done".to_string()),
                    Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm)) => {
                        cm.data.and_then(|d| d.get("k").cloned())
                    }
                    _ => None,
                };
                if tx.send(seen).is_err() {
                    return;
                }
            }
        });
        while rx.recv().await.unwrap().as_deref() != Some("init-done") {}
        let lists = |fake: &KubeFake| {
            fake.requests()
                .iter()
                .filter(|r| r["verb"] == "list")
                .count()
        };
        let before = lists(&fake);
        let watches = |fake: &KubeFake| {
            fake.requests()
                .iter()
                .filter(|r| r["verb"] == "watch")
                .count()
        };
        // The watcher's watch (after the raw one) is open: expire it.
        let deadline = Instant::now() + Duration::from_secs(60);
        while watches(&fake) < 2 {
            assert!(Instant::now() < deadline, "the watcher never watched");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        fake.expire_watches();
        let patch = Patch::Merge(json!({"data": {"k": "3"}}));
        api.patch("n", &PatchParams::default(), &patch)
            .await
            .unwrap();
        while rx.recv().await.unwrap().as_deref() != Some("3") {}
        assert!(lists(&fake) > before, "the watcher relisted after 410");
    });
}
