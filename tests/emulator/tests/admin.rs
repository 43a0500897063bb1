//! The admin API, endpoint by endpoint, as docs/EMULATOR.md describes it.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const V: &str = "api-version=2025-07-01";

async fn call(raw: &Raw, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = raw
        .client
        .request(method, raw.url(&format!("/_emulator{path}")));
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let (s, _, b) = raw.send(req).await;
    (s, b)
}

#[tokio::test]
async fn admin_endpoints() {
    use reqwest::Method as M;
    let emu = emulator().await;
    let raw = Raw::new(&emu);
    let client_id = emu.info().client_id.clone();

    let (s, info) = call(&raw, M::GET, "/info", None).await;
    assert_eq!(s, 200);
    assert_eq!(info["vault_url"], emu.info().vault_url.as_str());

    // Seed, then direct secret changes.
    let seed = json!({"secrets": [{"name": "a", "versions": [{"value": "1"}, {"value": "2"}]}]});
    assert_eq!(call(&raw, M::POST, "/seed", Some(seed)).await.0, 204);
    let (s, put) = call(
        &raw,
        M::PUT,
        "/secrets/b",
        Some(json!({"value": "x", "contentType": "text/plain", "tags": {"k": "v"}, "exp": 2000000000})),
    )
    .await;
    assert_eq!(s, 200);
    let version = put["version"].as_str().expect("version").to_string();
    assert!(put["id"]
        .as_str()
        .expect("id")
        .ends_with(&format!("/secrets/b/{version}")));
    let (s, patched) = call(
        &raw,
        M::PATCH,
        "/secrets/b",
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(
        (s, patched["version"].as_str()),
        (200, Some(version.as_str()))
    );
    let (_, all) = call(&raw, M::GET, "/secrets", None).await;
    let b = &all["secrets"][1];
    assert_eq!(b["name"], "b");
    assert_eq!(b["versions"][0]["enabled"], false);
    assert_eq!(b["versions"][0]["contentType"], "text/plain");
    assert_eq!(
        all["secrets"][0]["versions"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(call(&raw, M::DELETE, "/secrets/b", None).await.0, 204);
    assert!(emu.secret("b").expect("kept as deleted").deleted);
    assert_eq!(
        call(&raw, M::DELETE, "/secrets/b?purge=true", None).await.0,
        204
    );
    assert!(emu.secret("b").is_none());
    assert_eq!(call(&raw, M::DELETE, "/secrets/b", None).await.0, 404);

    // Identities and permissions.
    let token = emu.mint_token(&client_id, Duration::from_secs(600));
    assert_eq!(
        call(
            &raw,
            M::POST,
            &format!("/identities/{client_id}/revoke"),
            Some(json!({"permissions": ["get"]}))
        )
        .await,
        (
            200,
            json!({"permissions": ["list", "set", "delete", "purge", "recover", "backup", "restore"]})
        )
    );
    assert_eq!(
        raw.get(&format!("/secrets/a?{V}"), Some(&token)).await.0,
        403
    );
    let (s, _) = call(
        &raw,
        M::POST,
        &format!("/identities/{client_id}/grant"),
        Some(json!({"permissions": ["get"]})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        raw.get(&format!("/secrets/a?{V}"), Some(&token)).await.0,
        200
    );
    assert_eq!(
        call(
            &raw,
            M::PUT,
            &format!("/identities/{client_id}/permissions"),
            Some(json!({"permissions": ["list"], "denied_secrets": ["a"]}))
        )
        .await
        .0,
        204
    );
    assert_eq!(
        raw.get(&format!("/secrets/a?{V}"), Some(&token)).await.0,
        403
    );
    assert_eq!(
        call(
            &raw,
            M::PUT,
            "/identities/reader",
            Some(json!({"client_secret": "pw", "permissions": ["get"]}))
        )
        .await
        .0,
        204
    );
    let (_, ids) = call(&raw, M::GET, "/identities", None).await;
    assert_eq!(ids.as_array().map(Vec::len), Some(2));
    assert_eq!(
        call(&raw, M::DELETE, "/identities/reader", None).await.0,
        204
    );
    assert_eq!(
        call(&raw, M::DELETE, "/identities/reader", None).await.0,
        404
    );

    // Token settings and minting.
    assert_eq!(
        call(
            &raw,
            M::PUT,
            "/token-lifetime",
            Some(json!({"seconds": 90}))
        )
        .await
        .0,
        204
    );
    let (s, t) = call(&raw, M::POST, "/tokens", Some(json!({"lifetime_secs": -5}))).await;
    assert_eq!(s, 200);
    let expired = t["access_token"].as_str().expect("token").to_string();
    assert_eq!(
        raw.get(&format!("/secrets/a?{V}"), Some(&expired)).await.0,
        401
    );
    let (_, t) = call(&raw, M::POST, "/tokens", None).await;
    let now = t["expires_on"].as_i64().expect("expires_on");
    let (_, t2) = call(&raw, M::POST, "/tokens", Some(json!({"client_id": "x"}))).await;
    assert!((now - t2["expires_on"].as_i64().expect("exp")).abs() <= 1);
    assert_eq!(
        call(
            &raw,
            M::PUT,
            "/throttle",
            Some(json!({"requests_per_10s": 1}))
        )
        .await
        .0,
        204
    );
    let (s, fed) = call(
        &raw,
        M::POST,
        "/federated-token",
        Some(json!({"subject": "x"})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(fed["token"].as_str().map(|t| t.split('.').count()), Some(3));
    let before = std::fs::read_to_string(&emu.info().federated_token_file).expect("file");
    let (s, rotated) = call(&raw, M::POST, "/federated-token/rotate", None).await;
    assert_eq!(s, 200);
    assert_eq!(
        rotated["federated_token_file"]
            .as_str()
            .map(std::path::PathBuf::from),
        Some(emu.info().federated_token_file.clone())
    );
    assert_ne!(
        std::fs::read_to_string(&emu.info().federated_token_file).expect("file"),
        before
    );

    // Faults: add, list, clear.
    let (s, added) = call(
        &raw,
        M::POST,
        "/faults",
        Some(
            json!({"kind": "status", "status": 500, "operation": "list_secrets", "fraction": 0.5}),
        ),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(added["id"], 1);
    let (_, listed) = call(&raw, M::GET, "/faults", None).await;
    assert_eq!(listed[0]["fault"]["status"], 500);
    assert_eq!(listed[0]["seen"], 0);
    assert_eq!(call(&raw, M::DELETE, "/faults", None).await.0, 204);
    assert!(emu.faults().is_empty());

    // Counts: read and reset (DELETE works too).
    let (s, counts) = call(&raw, M::GET, "/counts", None).await;
    assert_eq!(s, 200);
    assert!(counts["get_secret"].as_u64().expect("count") >= 2);
    assert_eq!(call(&raw, M::DELETE, "/counts", None).await.0, 200);
    assert_eq!(emu.counts().get("total"), 0);

    assert_eq!(call(&raw, M::DELETE, "/secrets", None).await.0, 204);
    assert!(emu.secrets().is_empty());
}

#[tokio::test]
async fn library_grant_and_revoke() {
    let emu = emulator().await;
    let id = emu.info().client_id.clone();
    let p = emu
        .revoke(&id, &["set", "delete"])
        .expect("identity exists");
    assert_eq!(
        p.names(),
        ["get", "list", "purge", "recover", "backup", "restore"]
    );
    let p = emu.grant(&id, &["set"]).expect("identity exists");
    assert!(p.set && !p.delete);
    assert!(emu.grant("nobody", &["get"]).is_err());
    assert!(emu.grant(&id, &["fly"]).is_err());
}

#[tokio::test]
async fn spawn_works_inside_an_async_test_and_reports_errors() {
    let emu = akvfs_emulator::Emulator::spawn(Default::default()).expect("spawns");
    let raw = Raw::new(&emu);
    assert_eq!(raw.get("/_emulator/info", None).await.0, 200);
    emu.shutdown();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let err = akvfs_emulator::Emulator::spawn(akvfs_emulator::EmulatorConfig {
        listen: taken.local_addr().expect("addr"),
        ..Default::default()
    })
    .expect_err("address in use");
    assert!(err.to_string().contains("cannot listen on"), "{err}");
}

#[tokio::test]
async fn versions_created_in_the_same_second_page_one_by_one() {
    let emu = emulator().await;
    let made: Vec<String> = (0..6)
        .map(|i| emu.set_secret("a", &i.to_string()).expect("set"))
        .collect();
    let raw = Raw::new(&emu);
    let token = emu.mint_token(&emu.info().client_id, Duration::from_secs(600));
    let mut next = Some(raw.url(&format!("/secrets/a/versions?{V}&maxresults=1")));
    let mut seen = Vec::new();
    while let Some(url) = next {
        let (s, _, page) = raw.send(raw.client.get(url).bearer_auth(&token)).await;
        assert_eq!(s, 200);
        for item in page["value"].as_array().expect("value") {
            let id = item["id"].as_str().expect("id");
            seen.push(id.rsplit('/').next().expect("version").to_string());
        }
        next = page["nextLink"].as_str().map(str::to_string);
    }
    assert_eq!(seen, made, "creation order, every version once");
}
