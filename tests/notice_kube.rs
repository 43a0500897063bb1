//! The ConfigMap notice source against a Kubernetes API fake: kube's default client
//! configuration (KUBECONFIG), get then watch from the object's resourceVersion, changes as
//! they come, a 410 relist that loses nothing, failures reported and recovered from, and only
//! `get`/`watch` on the one object (what a Role with resourceNames allows).

#[path = "kubefake/mod.rs"]
mod kubefake;

use std::time::Duration;

use akvfs::sim::{ConfigMapSource, NoticeError, NoticeSource, SourceEvent};
use serde_json::json;

const NS: &str = "akvfs";
const NAME: &str = "akvfs-notice-myvault";

fn data(updated: i64) -> serde_json::Value {
    let secrets = json!({"db-password": {"updated": updated, "enabled": true, "contentType": null, "expires": null}});
    json!({
        "vault": "https://myvault.vault.azure.net",
        "fleetSize": "1000",
        "limitPer10s": "4000",
        "secrets": secrets.to_string(),
        "listedAt": "1767225600",
        "heartbeat": "1767225600",
    })
}

fn path() -> String {
    format!("/api/v1/namespaces/{NS}/configmaps/{NAME}")
}

fn write(k: &kubefake::KubeFake, updated: i64) {
    let (code, _) = k.request(
        "PATCH",
        &path(),
        "application/merge-patch+json",
        Some(&json!({"data": data(updated)})),
    );
    assert_eq!(code, 200);
}

/// The next event, or a failure after a generous deadline.
async fn next(s: &mut ConfigMapSource) -> SourceEvent {
    tokio::time::timeout(Duration::from_secs(60), s.next())
        .await
        .expect("the source reported something within a minute")
}

/// The next notice's version time of db-password, skipping Down reports.
async fn next_updated(s: &mut ConfigMapSource) -> i64 {
    loop {
        match next(s).await {
            SourceEvent::Notice(n) => {
                return n.secrets.values().next().map(|m| m.updated).unwrap_or(-1)
            }
            SourceEvent::Down(_) => continue,
            other => panic!("expected a notice, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_configmap_source_follows_one_object_with_get_and_watch_only() {
    let k = kubefake::KubeFake::start(0.5);
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("KUBECONFIG", k.kubeconfig(dir.path(), NS));
    let (code, _) = k.api(
        "POST",
        &format!("/api/v1/namespaces/{NS}/configmaps"),
        Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": NAME, "namespace": NS}, "data": data(100)})),
    );
    assert_eq!(code, 201);
    // An object the node has no business reading: never asked for.
    k.api(
        "POST",
        &format!("/api/v1/namespaces/{NS}/configmaps"),
        Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other", "namespace": NS}, "data": {"x": "y"}})),
    );

    let mut s = ConfigMapSource::new(NS.into(), NAME.into());
    assert_eq!(next_updated(&mut s).await, 100, "the first read");
    write(&k, 200);
    assert_eq!(
        next_updated(&mut s).await,
        200,
        "a change arrives on the watch"
    );

    // A change written while the watch is gone and the history compacted: the 410 makes
    // the source read the object again, and the change is not lost.
    k.close_watches();
    k.compact();
    write(&k, 300);
    k.expire_watches();
    let mut last = next_updated(&mut s).await;
    while last < 300 {
        last = next_updated(&mut s).await;
    }
    assert_eq!(last, 300);

    // Unusable content is reported, not acted on.
    let (code, _) = k.request(
        "PATCH",
        &path(),
        "application/merge-patch+json",
        Some(&json!({"data": {"fleetSize": "lots"}})),
    );
    assert_eq!(code, 200);
    match next(&mut s).await {
        SourceEvent::Invalid(why) => assert!(
            matches!(
                why,
                NoticeError::NotDecimal {
                    key: "fleetSize",
                    ..
                }
            ),
            "{why:?}"
        ),
        other => panic!("expected Invalid, got {other:?}"),
    }
    write(&k, 400);
    assert_eq!(next_updated(&mut s).await, 400);

    // The API server failing: reported as down, then followed again.
    k.fail("get", "configmaps", 500, 2);
    k.expire_watches();
    let mut downs = 0;
    loop {
        match next(&mut s).await {
            SourceEvent::Down(_) => downs += 1,
            SourceEvent::Notice(n) => {
                assert_eq!(n.secrets.values().next().map(|m| m.updated), Some(400));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(downs >= 1);

    // Deleted: missing (the node then polls on its own).
    let (code, _) = k.api("DELETE", &path(), None);
    assert_eq!(code, 200);
    loop {
        match next(&mut s).await {
            SourceEvent::Missing => break,
            SourceEvent::Down(_) | SourceEvent::Notice(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }

    // Only get and watch, and only ever on this one object.
    let reqs = k.requests();
    let ours: Vec<_> = reqs
        .iter()
        .filter(|r| {
            r["resource"] == "configmaps"
                && r["verb"] != "create"
                && r["verb"] != "patch"
                && r["verb"] != "delete"
        })
        .collect();
    assert!(ours.iter().any(|r| r["verb"] == "watch"));
    for r in &ours {
        assert!(r["verb"] == "get" || r["verb"] == "watch", "{r}");
        assert_ne!(r["name"], "other", "{r}");
    }
}
