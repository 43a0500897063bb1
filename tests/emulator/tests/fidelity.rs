//! Behaviours the official azure-keyvault-secrets test suite relies on, checked with the Rust SDK
//! and plain HTTPS:
//! - ids, `nextLink`s, recovery ids and the ready line never carry the default port (443), and
//!   the 401 challenge and discovery documents name the authority host name, never the listen IP;
//! - listing the versions of a secret that does not exist is an empty page, not 404;
//! - backup and restore: an opaque blob that restores only into the emulator that made it, with
//!   Key Vault's 409 for a name that is in use.

mod common;

use akvfs_emulator::{Emulator, EmulatorConfig, EmulatorError, Permissions};
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::http::{ClientOptions, RetryOptions, Transport};
use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};
use azure_security_keyvault_secrets::models::{RestoreSecretParameters, SetSecretParameters};
use azure_security_keyvault_secrets::{ResourceExt, SecretClient, SecretClientOptions};
use common::*;
use futures::TryStreamExt;
use serde_json::{json, Value};
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

const V: &str = "api-version=7.6";
const VAULT: &str = "fidelity.vault.azure.net";
const AUTHORITY: &str = "login.microsoftonline.com";

/// A random loopback address 127.x.y.z (x, y, z in 1..=254), so runs in parallel never compete
/// for a port.
fn random_loopback() -> Ipv4Addr {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    let n = h.finish();
    let part = |shift: u32| 1 + ((n >> shift) % 254) as u8;
    Ipv4Addr::new(127, part(0), part(8), part(16))
}

fn config(listen: SocketAddr) -> EmulatorConfig {
    EmulatorConfig {
        listen,
        vault_host: Some(VAULT.to_string()),
        authority_host: Some(AUTHORITY.to_string()),
        ..Default::default()
    }
}

/// An emulator on port 443 serving [`VAULT`] and [`AUTHORITY`]; None (the test is skipped, with
/// a message) when the process may not bind port 443.
async fn on_default_port() -> Option<Emulator> {
    for _ in 0..5 {
        let listen = SocketAddr::new(IpAddr::V4(random_loopback()), 443);
        match Emulator::start(config(listen)).await {
            Ok(emu) => return Some(emu),
            Err(EmulatorError::Bind { source, .. })
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                eprintln!("skipped: binding port 443 needs root (CAP_NET_BIND_SERVICE)");
                return None;
            }
            Err(EmulatorError::Bind { .. }) => continue,
            Err(e) => panic!("emulator does not start: {e}"),
        }
    }
    panic!("no free loopback address for port 443 after 5 tries");
}

/// A client that trusts the emulator's CA and resolves both host names to it.
fn client(emu: &Emulator) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(emu.ca_pem().as_bytes()).expect("the CA is PEM");
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .resolve(VAULT, emu.info().address)
        .resolve(AUTHORITY, emu.info().address)
        .build()
        .expect("reqwest client builds")
}

fn sdk_options(emu: &Emulator) -> ClientOptions {
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = emu.info().authority_host.clone();
    ClientOptions {
        transport: Some(Transport::new(Arc::new(client(emu)))),
        retry: RetryOptions::none(),
        cloud: Some(Arc::new(CloudConfiguration::Custom(cloud))),
        ..Default::default()
    }
}

/// The Rust SDK with a client secret credential, challenge-resource verification on.
fn sdk_client(emu: &Emulator) -> SecretClient {
    let info = emu.info();
    let credential = ClientSecretCredential::new(
        &info.tenant_id,
        info.client_id.clone(),
        info.client_secret
            .clone()
            .expect("default client secret")
            .into(),
        Some(ClientSecretCredentialOptions {
            client_options: sdk_options(emu),
        }),
    )
    .expect("credential builds");
    SecretClient::new(
        &info.vault_url,
        credential,
        Some(SecretClientOptions {
            client_options: sdk_options(emu),
            verify_challenge_resource: Some(true),
            ..Default::default()
        }),
    )
    .expect("secret client builds")
}

struct Http {
    client: reqwest::Client,
    vault: String,
    token: String,
}

impl Http {
    fn new(emu: &Emulator) -> Http {
        Http {
            client: client(emu),
            vault: emu.info().vault_url.clone(),
            token: emu.mint_token(&emu.info().client_id, Duration::from_secs(600)),
        }
    }

    /// Sends `method` to `url` (absolute, or a path of the vault) with the token.
    async fn send(&self, method: reqwest::Method, url: &str, body: Option<Value>) -> (u16, Value) {
        let url = if url.starts_with("https://") {
            url.to_string()
        } else {
            format!("{}{url}", self.vault)
        };
        let mut req = self.client.request(method, url).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let resp = req.send().await.expect("request is answered");
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("body is read");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn get(&self, url: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, url, None).await
    }

    async fn post(&self, url: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, url, Some(body)).await
    }
}

/// No `:443` and no listen IP anywhere in a response body.
fn assert_no_port_or_ip(body: &Value, emu: &Emulator) {
    let text = body.to_string();
    assert!(!text.contains(":443"), "default port in {text}");
    let ip = emu.info().address.ip().to_string();
    assert!(!text.contains(&ip), "listen IP {ip} in {text}");
}

#[tokio::test]
async fn ids_links_and_challenges_on_port_443_name_hosts_without_the_port() {
    let Some(emu) = on_default_port().await else {
        return;
    };
    let info = emu.info();
    assert_eq!(info.vault_url, format!("https://{VAULT}"));
    assert_eq!(info.authority_host, format!("https://{AUTHORITY}"));
    assert!(!info.admin_url.contains(":443") && !info.identity_endpoint.contains(":443"));

    // The SDK's own parsing of the ids it gets back agrees with the client's vault URL (what
    // the Python SDK's bundle validation and KeyVaultSecretIdentifier check).
    let sdk = sdk_client(&emu);
    let params = SetSecretParameters {
        value: Some("s3cret".into()),
        ..Default::default()
    };
    let set = sdk
        .set_secret("db-password", params.try_into().expect("serializes"), None)
        .await
        .expect("set through the SDK")
        .into_model()
        .expect("parses");
    let id = set.resource_id().expect("id parses");
    assert_eq!(id.vault_url, sdk.endpoint().as_str().trim_end_matches('/'));
    assert_eq!(id.vault_url, info.vault_url);
    let version = id.version.expect("id has a version");
    assert_eq!(
        set.id.as_deref(),
        Some(format!("https://{VAULT}/secrets/db-password/{version}").as_str())
    );

    let http = Http::new(&emu);
    emu.set_secret("db-password", "two").expect("set");
    emu.set_secret("api-key", "k").expect("set");
    let (s, page) = http.get(&format!("/secrets?{V}&maxresults=1")).await;
    assert_eq!(s, 200);
    let next = page["nextLink"].as_str().expect("a next page");
    assert!(
        next.starts_with(&format!("https://{VAULT}/secrets?")),
        "{next}"
    );
    assert_no_port_or_ip(&page, &emu);
    let (s, page2) = http.get(next).await;
    assert_eq!(s, 200, "the nextLink is followed as is");
    assert_no_port_or_ip(&page2, &emu);
    let (s, versions) = http
        .get(&format!("/secrets/db-password/versions?{V}&maxresults=1"))
        .await;
    assert_eq!(s, 200);
    assert!(versions["nextLink"]
        .as_str()
        .expect("a next page")
        .starts_with(&format!("https://{VAULT}/secrets/db-password/versions?")));
    assert_no_port_or_ip(&versions, &emu);

    let (s, deleted) = http
        .send(
            reqwest::Method::DELETE,
            &format!("/secrets/api-key?{V}"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        deleted["recoveryId"],
        json!(format!("https://{VAULT}/deletedsecrets/api-key"))
    );
    assert_no_port_or_ip(&deleted, &emu);

    // The challenge names the authority host name.
    let resp = http
        .client
        .get(format!("https://{VAULT}/secrets/db-password?{V}"))
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(
        resp.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some(
            format!(
                "Bearer authorization=\"https://{AUTHORITY}/{}\", resource=\"https://vault.azure.net\"",
                info.tenant_id
            )
            .as_str()
        )
    );

    // So does the OpenID discovery document MSAL reads before asking for a token.
    let (s, oidc) = http
        .get(&format!(
            "https://{AUTHORITY}/{}/v2.0/.well-known/openid-configuration",
            info.tenant_id
        ))
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        oidc["issuer"],
        json!(format!("https://{AUTHORITY}/{}/v2.0", info.tenant_id))
    );
    assert_eq!(
        oidc["token_endpoint"],
        json!(format!(
            "https://{AUTHORITY}/{}/oauth2/v2.0/token",
            info.tenant_id
        ))
    );
    assert_no_port_or_ip(&oidc, &emu);
}

#[tokio::test]
async fn authority_host_name_replaces_the_listen_ip_on_any_port() {
    let emu = Emulator::start(config(SocketAddr::from(([127, 0, 0, 1], 0))))
        .await
        .expect("emulator starts");
    let info = emu.info();
    let port = info.address.port();
    assert_eq!(info.authority_host, format!("https://{AUTHORITY}:{port}"));
    assert_eq!(info.vault_url, format!("https://{VAULT}:{port}"));
    let http = Http::new(&emu);
    let resp = http
        .client
        .get(format!("{}/secrets/a?{V}", info.vault_url))
        .send()
        .await
        .expect("answered");
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        challenge.starts_with(&format!(
            "Bearer authorization=\"https://{AUTHORITY}:{port}/{}\"",
            info.tenant_id
        )),
        "{challenge}"
    );
    let (s, oidc) = http
        .get(&format!(
            "{}/{}/v2.0/.well-known/openid-configuration",
            info.authority_host, info.tenant_id
        ))
        .await;
    assert_eq!(s, 200);
    assert!(!oidc.to_string().contains("127.0.0.1"), "{oidc}");
    // The certificate covers the authority host name: the requests above went over HTTPS to it.
    assert!(oidc["token_endpoint"]
        .as_str()
        .is_some_and(|t| t.starts_with(&info.authority_host)));
}

#[tokio::test]
async fn versions_of_a_secret_that_does_not_exist_are_an_empty_page() {
    let emu = Emulator::start(config(SocketAddr::from(([127, 0, 0, 1], 0))))
        .await
        .expect("emulator starts");
    let sdk = sdk_client(&emu);
    let mut pager = sdk
        .list_secret_properties_versions("never-created", None)
        .expect("pager builds");
    let mut items = Vec::new();
    while let Some(item) = pager.try_next().await.expect("a page, not an error") {
        items.push(item);
    }
    assert!(items.is_empty());

    let http = Http::new(&emu);
    let empty = json!({"value": [], "nextLink": null});
    assert_eq!(
        http.get(&format!("/secrets/never-created/versions?{V}"))
            .await,
        (200, empty.clone())
    );
    assert_eq!(
        http.get(&format!("/secrets/never-created/versions?{V}&maxresults=1"))
            .await,
        (200, empty.clone())
    );
    // A soft-deleted secret has no live versions either.
    emu.set_secret("gone", "x").expect("set");
    emu.delete_secret("gone").expect("delete");
    assert_eq!(
        http.get(&format!("/secrets/gone/versions?{V}")).await,
        (200, empty)
    );
    // Still validated: a bad name is 400, as for every operation on a name.
    assert_eq!(
        http.get(&format!("/secrets/bad_name/versions?{V}")).await.0,
        400
    );
    assert_eq!(emu.counts().get("list_secret_versions"), 5);
}

#[tokio::test]
async fn backup_restores_every_version_into_the_same_emulator_only() {
    let emu = Emulator::start(config(SocketAddr::from(([127, 0, 0, 1], 0))))
        .await
        .expect("emulator starts");
    let info = emu.info().clone();
    let sdk = sdk_client(&emu);
    let http = Http::new(&emu);
    let v1 = emu
        .set_secret_with(
            "Db-Password",
            akvfs_emulator::SecretSpec {
                value: "one".into(),
                content_type: Some("text/plain".into()),
                ..Default::default()
            },
        )
        .expect("set");
    let v2 = emu.set_secret("db-password", "two").expect("set");
    emu.set_enabled("db-password", Some(&v1), false)
        .expect("disable v1");
    let (_, before) = http.get(&format!("/secrets/db-password/{v2}?{V}")).await;

    // Backup through the SDK: opaque bytes, no value in sight.
    let backup = sdk
        .backup_secret("db-password", None)
        .await
        .expect("backup")
        .into_model()
        .expect("parses")
        .value
        .expect("a blob");
    assert!(!backup.windows(3).any(|w| w == b"one" || w == b"two"));

    // The name is in use, live and then soft-deleted: Key Vault's 409.
    let latest_id = format!("{}/secrets/Db-Password/{v2}", info.vault_url);
    let blob = json!({ "value": base64_url(&backup) });
    let (s, err) = http
        .post(&format!("/secrets/restore?{V}"), blob.clone())
        .await;
    assert_eq!((s, err["error"]["code"].as_str()), (409, Some("Conflict")));
    let message = err["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!(
            "There was a conflict restoring the secret '{latest_id}'. This can happen if either: a \
             second secret with the same name was created after the first secret was deleted"
        )),
        "{message}"
    );
    emu.delete_secret("db-password").expect("delete");
    let (s, err) = http
        .post(&format!("/secrets/restore?{V}"), blob.clone())
        .await;
    assert_eq!((s, err["error"]["code"].as_str()), (409, Some("Conflict")));

    // Purged: the SDK restores it, with every version, id and attribute as they were.
    emu.purge_secret("db-password").expect("purge");
    let params = RestoreSecretParameters {
        secret_backup: Some(backup.clone()),
    };
    let restored = sdk
        .restore_secret(params.try_into().expect("serializes"), None)
        .await
        .expect("restore")
        .into_model()
        .expect("parses");
    assert_eq!(restored.id.as_deref(), Some(latest_id.as_str()));
    assert_eq!(restored.value, None, "restore does not return the value");
    let (s, after) = http.get(&format!("/secrets/db-password/{v2}?{V}")).await;
    assert_eq!((s, &after), (200, &before));
    let (s, old) = http.get(&format!("/secrets/db-password/{v1}?{V}")).await;
    assert_eq!(
        (s, old["error"]["innererror"]["code"].as_str()),
        (403, Some("SecretDisabled")),
        "v1 comes back disabled, as it was"
    );
    let view = emu.secret("db-password").expect("restored");
    assert_eq!(view.name, "Db-Password");
    let ids: Vec<&str> = view.versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(ids, [v1.as_str(), v2.as_str()]);
    assert_eq!(view.versions[0].content_type.as_deref(), Some("text/plain"));

    // A backup restores only into the emulator that made it.
    let other = Emulator::start(EmulatorConfig::default())
        .await
        .expect("another emulator starts");
    let other_http = Http {
        client: http_client(&other),
        vault: other.info().vault_url.clone(),
        token: other.mint_token(&other.info().client_id, Duration::from_secs(600)),
    };
    let (s, err) = other_http
        .post(&format!("/secrets/restore?{V}"), blob.clone())
        .await;
    assert_eq!(
        (s, err["error"]["code"].as_str()),
        (400, Some("BadParameter"))
    );
    assert!(other.secret("db-password").is_none());

    // Bad blobs and bodies.
    for body in [
        json!({"value": "bm90IGEgYmFja3Vw"}),
        json!({"value": "!!"}),
        json!({"value": 5}),
        json!({}),
    ] {
        let (s, err) = http.post(&format!("/secrets/restore?{V}"), body).await;
        assert_eq!(
            (s, err["error"]["code"].as_str()),
            (400, Some("BadParameter"))
        );
    }
    let (s, err) = http
        .post(&format!("/secrets/never-created/backup?{V}"), json!({}))
        .await;
    assert_eq!(
        (s, err["error"]["code"].as_str()),
        (404, Some("SecretNotFound"))
    );

    // backup and restore are permissions of their own.
    let mut no_backup = Permissions::all();
    no_backup.backup = false;
    no_backup.restore = false;
    emu.set_permissions(&info.client_id, no_backup)
        .expect("permissions");
    let (s, err) = http
        .post(&format!("/secrets/db-password/backup?{V}"), json!({}))
        .await;
    assert_eq!(
        (s, err["error"]["innererror"]["code"].as_str()),
        (403, Some("ForbiddenByPolicy"))
    );
    let (s, _) = http.post(&format!("/secrets/restore?{V}"), blob).await;
    assert_eq!(s, 403);

    let counts = emu.counts();
    assert_eq!(counts.get("backup_secret"), 3);
    assert_eq!(counts.get("restore_secret"), 8);
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
