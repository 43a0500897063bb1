//! A scripted request sequence touching every counter, and the exact counts it must produce.

mod common;

use akvfs_emulator::{Fault, Operation, ASSERTION_TYPE};
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const V: &str = "api-version=2025-07-01";

#[tokio::test]
async fn scripted_sequence_produces_exact_counts() {
    let emu = emulator().await;
    let raw = Raw::new(&emu);
    let info = emu.info().clone();
    let token_path = format!("/{}/oauth2/v2.0/token", info.tenant_id);

    // Unauthenticated and badly authenticated vault requests.
    assert_eq!(raw.get(&format!("/secrets/a?{V}"), None).await.0, 401);
    assert_eq!(
        raw.get(&format!("/secrets/a?{V}"), Some("x.y.z")).await.0,
        401
    );

    // Token requests of every kind, and discovery.
    let assertion = std::fs::read_to_string(&info.federated_token_file).expect("token file");
    let (s, _, body) = raw
        .send(raw.post_form(
            &token_path,
            &[
                ("client_assertion", assertion.as_str()),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_id", info.client_id.as_str()),
                ("grant_type", "client_credentials"),
                ("scope", "https://vault.azure.net/.default"),
            ],
        ))
        .await;
    assert_eq!(s, 200);
    let token = body["access_token"].as_str().expect("token").to_string();
    let (s, _, _) = raw
        .send(raw.post_form(
            &token_path,
            &[
                (
                    "client_secret",
                    info.client_secret.as_deref().expect("secret"),
                ),
                ("client_id", info.client_id.as_str()),
                ("grant_type", "client_credentials"),
                ("scope", "https://vault.azure.net/.default"),
            ],
        ))
        .await;
    assert_eq!(s, 200);
    let (s, _, _) = raw
        .send(raw.post_form(&token_path, &[("grant_type", "client_credentials")]))
        .await;
    assert_eq!(s, 400, "token_other");
    let (s, _, _) = raw
        .send(
            raw.client
                .get(format!(
                    "{}?api-version=2019-08-01&resource=https://vault.azure.net",
                    info.identity_endpoint
                ))
                .header("x-identity-header", &info.identity_header),
        )
        .await;
    assert_eq!(s, 200);
    let openid = format!("/{}/v2.0/.well-known/openid-configuration", info.tenant_id);
    let (s, doc) = raw.get(&openid, None).await;
    assert_eq!(s, 200);
    assert_eq!(
        doc["token_endpoint"].as_str(),
        Some(format!("{}{token_path}", info.authority_host).as_str())
    );
    assert_eq!(
        raw.get("/common/discovery/instance?api-version=1.1", None)
            .await
            .0,
        200
    );
    assert_eq!(
        raw.get(&format!("/{}/discovery/v2.0/keys", info.tenant_id), None)
            .await
            .0,
        200
    );

    // Vault operations.
    let put = |value: &str| {
        raw.client
            .put(raw.url(&format!("/secrets/a?{V}")))
            .bearer_auth(&token)
            .body(format!("{{\"value\":\"{value}\"}}"))
    };
    let (s, _, b) = raw.send(put("1")).await;
    assert_eq!(s, 200);
    let v1 = b["id"]
        .as_str()
        .and_then(|id| id.rsplit('/').next())
        .expect("version")
        .to_string();
    assert_eq!(raw.send(put("2")).await.0, 200);
    let t = Some(token.as_str());
    assert_eq!(raw.get(&format!("/secrets/a/?{V}"), t).await.0, 200);
    assert_eq!(raw.get(&format!("/secrets/a/{v1}?{V}"), t).await.0, 200);
    assert_eq!(raw.get(&format!("/secrets?{V}"), t).await.0, 200);
    assert_eq!(raw.get(&format!("/secrets/a/versions?{V}"), t).await.0, 200);
    let (s, _, _) = raw
        .send(
            raw.client
                .patch(raw.url(&format!("/secrets/a/?{V}")))
                .bearer_auth(&token)
                .body(r#"{"contentType":"text/plain"}"#),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(raw.get(&format!("/storage?{V}"), t).await.0, 404);

    // A status fault answers instead of the operation; a latency fault delays it.
    emu.inject_fault(
        Fault::status(503)
            .for_operation(Operation::GetSecret)
            .times(1),
    )
    .expect("fault");
    assert_eq!(raw.get(&format!("/secrets/a?{V}"), t).await.0, 503);
    emu.inject_fault(Fault::latency(Duration::from_millis(50)).times(1))
        .expect("fault");
    let start = Instant::now();
    assert_eq!(raw.get(&format!("/secrets/a?{V}"), t).await.0, 200);
    assert!(start.elapsed() >= Duration::from_millis(50));

    // The budget: one request admitted, the next throttled.
    emu.set_requests_per_10s(1);
    assert_eq!(raw.get(&format!("/secrets/a?{V}"), t).await.0, 200);
    let (s, h, _) = raw
        .send(
            raw.client
                .get(raw.url(&format!("/secrets/a?{V}")))
                .bearer_auth(&token),
        )
        .await;
    assert_eq!(s, 429);
    assert!(h.get("retry-after").is_some());
    emu.set_requests_per_10s(4000);

    // Soft delete, deleted-secret operations, recover, purge.
    let delete = || {
        raw.client
            .delete(raw.url(&format!("/secrets/a?{V}")))
            .bearer_auth(&token)
    };
    assert_eq!(raw.send(delete()).await.0, 200);
    assert_eq!(raw.get(&format!("/deletedsecrets/a?{V}"), t).await.0, 200);
    let (s, list) = raw.get(&format!("/deletedsecrets?{V}"), t).await;
    assert_eq!(s, 200);
    assert_eq!(list["value"].as_array().map(Vec::len), Some(1));
    let (s, _, _) = raw
        .send(
            raw.client
                .post(raw.url(&format!("/deletedsecrets/a/recover?{V}")))
                .bearer_auth(&token),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(raw.send(delete()).await.0, 200);
    let (s, _, _) = raw
        .send(
            raw.client
                .delete(raw.url(&format!("/deletedsecrets/a?{V}")))
                .bearer_auth(&token),
        )
        .await;
    assert_eq!(s, 204);

    // Admin calls are never counted.
    let (s, _) = raw.get("/_emulator/counts", None).await;
    assert_eq!(s, 200);

    let mut expected: BTreeMap<String, u64> = emu
        .counts()
        .as_map()
        .keys()
        .map(|k| (k.clone(), 0))
        .collect();
    for (name, n) in [
        ("challenge", 1),
        ("invalid_token", 1),
        ("token_client_assertion", 1),
        ("token_client_secret", 1),
        ("token_other", 1),
        ("token_managed_identity", 1),
        ("openid_configuration", 1),
        ("instance_discovery", 1),
        ("jwks", 1),
        ("set_secret", 2),
        ("get_secret", 3),
        ("get_secret_version", 1),
        ("list_secrets", 1),
        ("list_secret_versions", 1),
        ("update_secret", 1),
        ("unknown_vault_operation", 1),
        ("faulted", 1),
        ("throttled", 1),
        ("delete_secret", 2),
        ("get_deleted_secret", 1),
        ("list_deleted_secrets", 1),
        ("recover_deleted_secret", 1),
        ("purge", 1),
        ("total", 27),
    ] {
        expected.insert(name.to_string(), n);
    }
    assert_eq!(emu.counts().as_map(), &expected);

    // The admin reset returns the counts it cleared.
    let (s, _, before) = raw
        .send(raw.client.post(raw.url("/_emulator/counts/reset")))
        .await;
    assert_eq!(s, 200);
    assert_eq!(before["total"], Value::from(27));
    assert_eq!(emu.counts().get("total"), 0);
}
