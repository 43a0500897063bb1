//! Extra vaults: one emulator, several vaults, one Entra ID. Each vault has its own secrets,
//! permissions, counters and admin API; one token is accepted by all of them.

mod common;

use akvfs_emulator::{Emulator, EmulatorConfig};
use azure_core::http::RetryOptions;
use common::*;

async fn get(
    client: &azure_security_keyvault_secrets::SecretClient,
    name: &str,
) -> Result<String, u16> {
    match client.get_secret(name, None).await {
        Ok(r) => Ok(r
            .into_model()
            .expect("bundle parses")
            .value
            .unwrap_or_default()),
        Err(e) => Err(error_parts(&e).0),
    }
}

#[tokio::test]
async fn extra_vaults_have_their_own_state_and_accept_the_same_tokens() {
    let emu = Emulator::start(EmulatorConfig {
        extra_vaults: vec!["127.0.0.1:0".parse().expect("address")],
        ..Default::default()
    })
    .await
    .expect("emulator starts");
    assert_eq!(emu.info().extra_vaults.len(), 1);
    assert!(emu.extra_vault(1).is_none());
    let b = emu.extra_vault(0).expect("extra vault 0");
    let listed = &emu.info().extra_vaults[0];
    assert_eq!(b.info().vault_url, listed.vault_url);
    assert_eq!(b.info().admin_url, listed.admin_url);
    assert_ne!(b.info().vault_url, emu.info().vault_url);
    assert_eq!(b.info().authority_host, emu.info().authority_host);
    // The ready line carries the list, and reads back.
    let line = emu.info().to_json_line();
    let back: akvfs_emulator::ReadyInfo = serde_json::from_str(&line).expect("ready line parses");
    assert_eq!(back.extra_vaults, emu.info().extra_vaults);

    emu.set_secret("db", "from-a").expect("set in a");
    b.set_secret("db", "from-b").expect("set in b");
    b.set_secret("only-b", "b2").expect("set in b");

    // One credential, one token from the one Entra ID, for both vaults.
    let credential = workload_credential(&emu);
    let a_client = secret_client(&emu, credential.clone(), RetryOptions::none());
    let b_client = secret_client(b, credential, RetryOptions::none());
    assert_eq!(get(&a_client, "db").await, Ok("from-a".into()));
    assert_eq!(get(&b_client, "db").await, Ok("from-b".into()));
    assert_eq!(get(&a_client, "only-b").await, Err(404));
    assert_eq!(get(&b_client, "only-b").await, Ok("b2".into()));
    // Each vault counts its own requests.
    assert_eq!(emu.counts().get("get_secret"), 2);
    assert_eq!(b.counts().get("get_secret"), 2);

    // Permissions are per vault: revoking get on B leaves A readable.
    let client_id = emu.info().client_id.clone();
    b.revoke(&client_id, &["get"])
        .expect("identity exists in b");
    assert_eq!(get(&b_client, "db").await, Err(403));
    assert_eq!(get(&a_client, "db").await, Ok("from-a".into()));
    b.grant(&client_id, &["get"]).expect("identity exists in b");
    assert_eq!(get(&b_client, "db").await, Ok("from-b".into()));

    // B's admin API acts on B.
    let raw = Raw {
        client: http_client(&emu),
        base: b.info().admin_url.clone(),
    };
    let (status, info) = raw.get("/info", None).await;
    assert_eq!(status, 200);
    assert_eq!(info["vault_url"], b.info().vault_url.as_str());
    let put = raw
        .client
        .put(raw.url("/secrets/by-admin"))
        .header("content-type", "application/json")
        .body(r#"{"value": "via-b-admin"}"#);
    assert_eq!(raw.send(put).await.0, 200);
    assert_eq!(get(&b_client, "by-admin").await, Ok("via-b-admin".into()));
    assert!(emu.secret("by-admin").is_none());
    emu.shutdown();
}

#[test]
fn a_spawned_emulator_serves_its_extra_vaults_too() {
    let emu = Emulator::spawn(EmulatorConfig {
        extra_vaults: vec!["127.0.0.1:0".parse().expect("address"); 2],
        ..Default::default()
    })
    .expect("emulator starts");
    let urls: Vec<&str> = emu
        .info()
        .extra_vaults
        .iter()
        .map(|e| e.vault_url.as_str())
        .collect();
    assert_eq!(urls.len(), 2);
    assert_ne!(urls[0], urls[1]);
    let b = emu.extra_vault(1).expect("extra vault 1");
    b.set_secret("x", "1").expect("set");
    assert!(emu.extra_vault(0).expect("vault 0").secret("x").is_none());
    // Without extra vaults the ready line has no extra_vaults field.
    let plain = Emulator::spawn(EmulatorConfig::default()).expect("emulator starts");
    assert!(!plain.info().to_json_line().contains("extra_vaults"));
}
