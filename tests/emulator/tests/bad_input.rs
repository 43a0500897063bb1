//! One test per bad input: the exact status and error body the emulator answers, and that it keeps
//! serving afterwards (no panic on any input).

mod common;

use akvfs_emulator::{
    Emulator, EmulatorConfig, FederatedTokenSpec, Permissions, TokenSpec, ASSERTION_TYPE,
    MAX_VALUE_BYTES,
};
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const V: &str = "api-version=2025-07-01";

struct Env {
    emu: Emulator,
    raw: Raw,
    token: String,
}

async fn env() -> Env {
    let emu = emulator().await;
    let raw = Raw::new(&emu);
    let token = emu.mint_token(&emu.info().client_id, Duration::from_secs(600));
    Env { emu, raw, token }
}

impl Env {
    async fn get(&self, path: &str) -> (u16, Value) {
        self.raw.get(path, Some(&self.token)).await
    }

    async fn put(&self, path: &str, body: &str) -> (u16, Value) {
        let req = self
            .raw
            .client
            .put(self.raw.url(path))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_string());
        let (s, _, b) = self.raw.send(req).await;
        (s, b)
    }

    async fn token_request(&self, pairs: &[(&str, &str)]) -> (u16, Value) {
        let path = format!("/{}/oauth2/v2.0/token", self.emu.info().tenant_id);
        let (s, _, b) = self.raw.send(self.raw.post_form(&path, pairs)).await;
        (s, b)
    }

    async fn assertion_request(&self, assertion: &str) -> (u16, Value) {
        let client_id = self.emu.info().client_id.clone();
        self.token_request(&[
            ("client_assertion", assertion),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_id", &client_id),
            ("grant_type", "client_credentials"),
            ("scope", "https://vault.azure.net/.default"),
        ])
        .await
    }

    /// The emulator still serves a normal request.
    async fn still_serving(&self) {
        self.emu.set_secret("alive", "yes").expect("set");
        let (s, b) = self.get(&format!("/secrets/alive?{V}")).await;
        assert_eq!((s, b["value"].as_str()), (200, Some("yes")));
    }
}

fn kv_error(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

fn assert_challenge(headers: &reqwest::header::HeaderMap, emu: &Emulator) {
    let expected = format!(
        "Bearer authorization=\"{}/{}\", resource=\"https://vault.azure.net\"",
        emu.info().authority_host,
        emu.info().tenant_id
    );
    assert_eq!(
        headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some(expected.as_str())
    );
}

fn entra_code(body: &Value) -> (String, Vec<u64>) {
    let codes = body["error_codes"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    (
        body["error"].as_str().unwrap_or_default().to_string(),
        codes,
    )
}

#[tokio::test]
async fn no_token_gets_the_challenge() {
    let e = env().await;
    let (s, h, b) = e
        .raw
        .send(e.raw.client.get(e.raw.url(&format!("/secrets/a/?{V}"))))
        .await;
    assert_eq!(s, 401);
    assert_eq!(
        b,
        kv_error(
            "Unauthorized",
            "AKV10000: Request is missing a Bearer or PoP token."
        )
    );
    assert_challenge(&h, &e.emu);
    assert_eq!(e.emu.counts().get("challenge"), 1);
    e.still_serving().await;
}

#[tokio::test]
async fn challenge_comes_before_any_validation() {
    let e = env().await;
    for (method, path, body) in [
        (
            reqwest::Method::PUT,
            "/secrets/bad_name?api-version=9.9",
            "{not json",
        ),
        (
            reqwest::Method::PUT,
            "/secrets/ok?api-version=2025-07-01",
            "{",
        ),
        (reqwest::Method::GET, "/secrets?maxresults=99", ""),
        (reqwest::Method::POST, "/nothing/here", "x"),
    ] {
        let req = e
            .raw
            .client
            .request(method, e.raw.url(path))
            .body(body.to_string());
        let (s, h, b) = e.raw.send(req).await;
        assert_eq!(s, 401, "{path}");
        assert_eq!(b["error"]["code"], "Unauthorized");
        assert_challenge(&h, &e.emu);
    }
    assert_eq!(e.emu.counts().get("challenge"), 4);
    assert_eq!(e.emu.counts().vault_requests(), 0);
}

#[tokio::test]
async fn forged_token_is_401_with_challenge() {
    let e = env().await;
    // Change one claim of a valid token without re-signing it.
    let parts: Vec<&str> = e.token.split('.').collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value =
        serde_json::from_slice(&b64.decode(parts[1]).expect("base64")).expect("json");
    claims["appid"] = json!("someone-else");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    // And a token signed by another emulator instance.
    let other = emulator().await;
    let foreign = other.mint_token(&e.emu.info().client_id, Duration::from_secs(600));
    for token in [forged.as_str(), foreign.as_str()] {
        let (s, h, b) = e
            .raw
            .send(
                e.raw
                    .client
                    .get(e.raw.url(&format!("/secrets/a?{V}")))
                    .bearer_auth(token),
            )
            .await;
        assert_eq!(s, 401);
        assert_eq!(
            b,
            kv_error(
                "Unauthorized",
                "AKV10046: Unable to resolve the key used for signature validation."
            )
        );
        assert_challenge(&h, &e.emu);
    }
    let (s, b) = e
        .raw
        .get(&format!("/secrets/a?{V}"), Some("not-a-jwt"))
        .await;
    assert_eq!(s, 401);
    assert_eq!(
        b["error"]["message"],
        "[BearerReadAccessTokenFailed] Error validating token: 'S2S12005'."
    );
    assert_eq!(e.emu.counts().get("invalid_token"), 3);
    e.still_serving().await;
}

#[tokio::test]
async fn expired_token_is_401() {
    let e = env().await;
    let mut spec = TokenSpec::new(&e.emu.info().client_id, Duration::ZERO);
    spec.lifetime_secs = -30;
    let (token, _) = e.emu.mint_token_with(&spec);
    let (s, b) = e.raw.get(&format!("/secrets/a?{V}"), Some(&token)).await;
    assert_eq!(s, 401);
    assert_eq!(
        b,
        kv_error(
            "Unauthorized",
            "[TokenExpired] Error validating token: 'S2S12086'."
        )
    );
}

#[tokio::test]
async fn wrong_audience_is_401() {
    let e = env().await;
    let mut spec = TokenSpec::new(&e.emu.info().client_id, Duration::from_secs(600));
    spec.audience = Some("https://management.azure.com/".into());
    let (token, _) = e.emu.mint_token_with(&spec);
    let (s, b) = e.raw.get(&format!("/secrets/a?{V}"), Some(&token)).await;
    assert_eq!(s, 401);
    assert_eq!(
        b,
        kv_error(
            "Unauthorized",
            "AKV10022: Invalid audience. Expected https://vault.azure.net, found: https://management.azure.com/."
        )
    );
}

#[tokio::test]
async fn token_of_another_tenant_is_401() {
    let e = env().await;
    let mut spec = TokenSpec::new(&e.emu.info().client_id, Duration::from_secs(600));
    spec.tenant_id = Some("other-tenant".into());
    let (token, _) = e.emu.mint_token_with(&spec);
    let (s, b) = e.raw.get(&format!("/secrets/a?{V}"), Some(&token)).await;
    assert_eq!(s, 401);
    assert!(b["error"]["message"]
        .as_str()
        .expect("message")
        .starts_with("AKV10032: Invalid issuer."));
}

#[tokio::test]
async fn bad_names_are_400() {
    let e = env().await;
    let long = "a".repeat(128);
    for name in ["bad_name", "dot.ted", long.as_str(), "%C3%A9t%C3%A9"] {
        let (s, b) = e.get(&format!("/secrets/{name}?{V}")).await;
        assert_eq!(s, 400, "{name}");
        assert_eq!(
            b,
            kv_error(
                "BadParameter",
                &format!("The request URI contains an invalid name: {name}")
            )
        );
    }
    let (s, _) = e
        .put(&format!("/secrets/bad_name?{V}"), r#"{"value":"x"}"#)
        .await;
    assert_eq!(s, 400);
    let (s, _) = e.get(&format!("/secrets/{}?{V}", "a".repeat(127))).await;
    assert_eq!(s, 404, "127 characters is a valid name");
    e.still_serving().await;
}

#[tokio::test]
async fn bad_json_bodies_are_400() {
    let e = env().await;
    for body in [
        "",
        "{",
        "[]",
        "\"value\"",
        "{\"value\": 5}",
        "{\"contentType\": \"x\"}",
        "{\"value\": \"x\", \"tags\": {\"a\": 1}}",
        "{\"value\": \"x\", \"attributes\": {\"enabled\": \"yes\"}}",
        "{\"value\": \"x\", \"attributes\": {\"exp\": \"tomorrow\"}}",
        "\u{0}\u{1}\u{2}",
    ] {
        let (s, b) = e.put(&format!("/secrets/a?{V}"), body).await;
        assert_eq!(s, 400, "{body:?}");
        assert_eq!(b["error"]["code"], "BadParameter", "{body:?}");
    }
    let (_, b) = e.put(&format!("/secrets/a?{V}"), "{").await;
    assert_eq!(
        b,
        kv_error("BadParameter", "Bad JSON content found in the request.")
    );
    let req = e
        .raw
        .client
        .patch(e.raw.url(&format!("/secrets/a/?{V}")))
        .bearer_auth(&e.token)
        .body("{");
    e.emu.set_secret("a", "1").expect("set");
    let (s, _, _) = e.raw.send(req).await;
    assert_eq!(s, 400);
    e.still_serving().await;
}

#[tokio::test]
async fn value_size_boundary_is_25600_bytes() {
    let e = env().await;
    let at_limit = json!({ "value": "x".repeat(MAX_VALUE_BYTES) }).to_string();
    let (s, b) = e.put(&format!("/secrets/big?{V}"), &at_limit).await;
    assert_eq!(s, 200);
    assert_eq!(b["value"].as_str().map(str::len), Some(25_600));
    let over = json!({ "value": "x".repeat(MAX_VALUE_BYTES + 1) }).to_string();
    let (s, b) = e.put(&format!("/secrets/big?{V}"), &over).await;
    assert_eq!(s, 400);
    assert_eq!(
        b,
        kv_error(
            "BadParameter",
            "The secret value is 25601 bytes; the maximum is 25600 bytes."
        )
    );
    // Multi-byte characters count in bytes.
    let wide = json!({ "value": "é".repeat(12_801) }).to_string();
    let (s, _) = e.put(&format!("/secrets/big?{V}"), &wide).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn unknown_or_missing_api_version_is_400() {
    let e = env().await;
    let (s, b) = e.get("/secrets/a?api-version=2099-01-01").await;
    assert_eq!(s, 400);
    assert_eq!(
        b,
        kv_error(
            "BadParameter",
            "The specified version (2099-01-01) is not recognized. Consider using the latest supported \
             version (2026-04-01)."
        )
    );
    let (s, b) = e.get("/secrets/a").await;
    assert_eq!(s, 400);
    assert_eq!(b["error"]["code"], "BadParameter");
    for v in ["7.0", "7.3", "7.6", "2025-07-01", "2026-04-01"] {
        let (s, _) = e.get(&format!("/secrets/a?api-version={v}")).await;
        assert_eq!(s, 404, "api-version {v} is accepted");
    }
}

#[tokio::test]
async fn bad_maxresults_and_skiptoken_are_400() {
    let e = env().await;
    for m in ["0", "26", "-1", "abc", "2.5", ""] {
        let (s, b) = e.get(&format!("/secrets?{V}&maxresults={m}")).await;
        assert_eq!(s, 400, "maxresults={m}");
        assert_eq!(b["error"]["code"], "BadParameter");
    }
    for m in ["1", "25"] {
        let (s, _) = e.get(&format!("/secrets?{V}&maxresults={m}")).await;
        assert_eq!(s, 200, "maxresults={m}");
    }
    let (s, b) = e.get(&format!("/secrets?{V}&$skiptoken=garbage!")).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("BadParameter"))
    );
    e.still_serving().await;
}

#[tokio::test]
async fn unknown_secret_or_version_is_404() {
    let e = env().await;
    let (s, b) = e.get(&format!("/secrets/nope?{V}")).await;
    assert_eq!(s, 404);
    assert_eq!(
        b,
        kv_error(
            "SecretNotFound",
            "A secret with (name/id) nope was not found in this key vault. If you recently deleted this \
             secret you may be able to recover it using the correct recovery command. For help resolving \
             this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
        )
    );
    e.emu.set_secret("a", "1").expect("set");
    let (s, b) = e
        .get(&format!("/secrets/a/0123456789abcdef0123456789abcdef?{V}"))
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (404, Some("SecretNotFound"))
    );
    let (s, _) = e.get(&format!("/secrets/a/not-a-version?{V}")).await;
    assert_eq!(s, 404);
    // Listing the versions of an unknown name is not an error in Key Vault: an empty page.
    let (s, b) = e.get(&format!("/secrets/nope/versions?{V}")).await;
    assert_eq!((s, b), (200, json!({"value": [], "nextLink": null})));
}

#[tokio::test]
async fn disabled_secret_is_403_secret_disabled() {
    let e = env().await;
    let version = e.emu.set_secret("a", "1").expect("set");
    e.emu.disable_secret("a").expect("disable");
    let expected = json!({"error": {
        "code": "Forbidden",
        "message": "Operation get is not allowed on a disabled secret.",
        "innererror": {"code": "SecretDisabled"}
    }});
    assert_eq!(
        e.get(&format!("/secrets/a/?{V}")).await,
        (403, expected.clone())
    );
    assert_eq!(
        e.get(&format!("/secrets/a/{version}?{V}")).await,
        (403, expected)
    );
    // Listing still shows it, disabled.
    let (s, b) = e.get(&format!("/secrets?{V}")).await;
    assert_eq!(s, 200);
    assert_eq!(b["value"][0]["attributes"]["enabled"], false);
}

#[tokio::test]
async fn missing_permission_is_403_forbidden_by_policy() {
    let e = env().await;
    e.emu
        .set_permissions(&e.emu.info().client_id, Permissions::none())
        .expect("identity exists");
    let (s, b) = e.get(&format!("/secrets?{V}")).await;
    assert_eq!(s, 403);
    assert_eq!(b["error"]["code"], "Forbidden");
    assert_eq!(b["error"]["innererror"]["code"], "ForbiddenByPolicy");
    assert!(b["error"]["message"]
        .as_str()
        .expect("message")
        .contains("does not have secrets list permission on key vault"));
    // A token for an identity the emulator does not know at all.
    let stranger = e.emu.mint_token("unknown-app", Duration::from_secs(600));
    let (s, b) = e.raw.get(&format!("/secrets/a?{V}"), Some(&stranger)).await;
    assert_eq!(
        (s, b["error"]["innererror"]["code"].as_str()),
        (403, Some("ForbiddenByPolicy"))
    );
}

#[tokio::test]
async fn unknown_vault_path_is_404() {
    let e = env().await;
    let (s, b) = e.get(&format!("/storage/a?{V}")).await;
    assert_eq!((s, b["error"]["code"].as_str()), (404, Some("NotFound")));
    let (s, b) = e.get(&format!("/keys/a?{V}")).await;
    assert_eq!((s, b["error"]["code"].as_str()), (404, Some("KeyNotFound")));
    let (s, b) = e.get(&format!("/certificates/a?{V}")).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (404, Some("CertificateNotFound"))
    );
    let (s, _) = e.get(&format!("/secrets/a/b/c?{V}")).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn unknown_client_is_refused_by_the_token_endpoint() {
    let e = env().await;
    let assertion = std::fs::read_to_string(&e.emu.info().federated_token_file).expect("file");
    let (s, b) = e
        .token_request(&[
            ("client_assertion", assertion.as_str()),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_id", "not-registered"),
            ("grant_type", "client_credentials"),
            ("scope", "https://vault.azure.net/.default"),
        ])
        .await;
    assert_eq!(s, 400);
    assert_eq!(entra_code(&b), ("unauthorized_client".into(), vec![700016]));
    let description = b["error_description"].as_str().expect("description");
    assert!(description.starts_with(
        "AADSTS700016: Application with identifier 'not-registered' was not found in the directory"
    ));
    for key in ["timestamp", "trace_id", "correlation_id", "error_uri"] {
        assert!(b[key].is_string(), "{key}");
    }
}

#[tokio::test]
async fn bad_federated_assertions_are_refused() {
    let e = env().await;
    let other = emulator().await;
    let forged = other.mint_federated_token(&FederatedTokenSpec::default());
    let expired = e.emu.mint_federated_token(&FederatedTokenSpec {
        lifetime_secs: Some(-5),
        ..Default::default()
    });
    let wrong_sub = e.emu.mint_federated_token(&FederatedTokenSpec {
        subject: Some("system:serviceaccount:other:other".into()),
        ..Default::default()
    });
    let wrong_aud = e.emu.mint_federated_token(&FederatedTokenSpec {
        audience: Some("api://something-else".into()),
        ..Default::default()
    });
    let wrong_iss = e.emu.mint_federated_token(&FederatedTokenSpec {
        issuer: Some("https://evil.example".into()),
        ..Default::default()
    });
    let cases: [(&str, u16, &str, u64); 6] = [
        ("garbage", 400, "invalid_request", 50027),
        (&forged, 401, "invalid_client", 50013),
        (&expired, 401, "invalid_client", 700024),
        (&wrong_iss, 401, "invalid_client", 700211),
        (&wrong_aud, 401, "invalid_client", 700212),
        (&wrong_sub, 401, "invalid_client", 700213),
    ];
    for (assertion, status, error, code) in cases {
        let (s, b) = e.assertion_request(assertion).await;
        assert_eq!(s, status, "{b}");
        assert_eq!(entra_code(&b), (error.to_string(), vec![code]));
    }
    // A correctly minted assertion works.
    let good = e.emu.mint_federated_token(&FederatedTokenSpec::default());
    let (s, b) = e.assertion_request(&good).await;
    assert_eq!(s, 200);
    assert_eq!(b["token_type"], "Bearer");
    assert_eq!(b["expires_in"], 3600);
    assert_eq!(b["ext_expires_in"], 3600);
    e.still_serving().await;
}

#[tokio::test]
async fn rotated_away_assertion_is_refused() {
    let e = env().await;
    let old = std::fs::read_to_string(&e.emu.info().federated_token_file).expect("file");
    assert_eq!(e.assertion_request(&old).await.0, 200);
    let new = e.emu.rotate_federated_token().expect("rotate");
    assert_eq!(
        std::fs::read_to_string(&e.emu.info().federated_token_file).expect("file"),
        new
    );
    let (s, b) = e.assertion_request(&old).await;
    assert_eq!(s, 401);
    assert_eq!(entra_code(&b), ("invalid_client".into(), vec![700024]));
    assert_eq!(e.assertion_request(&new).await.0, 200);
}

#[tokio::test]
async fn client_secret_errors() {
    let e = env().await;
    let client_id = e.emu.info().client_id.clone();
    let with = |key: &'static str, value: &'static str| {
        [
            ("client_id", client_id.clone()),
            ("grant_type", "client_credentials".to_string()),
            ("scope", "https://vault.azure.net/.default".to_string()),
            (key, value.to_string()),
        ]
    };
    for (key, value, status, code) in [
        ("client_secret", "wrong", 401, Some(7000215)),
        ("unrelated", "x", 401, Some(7000218)),
        ("client_secret", "emulator-client-secret", 200, None),
    ] {
        let pairs = with(key, value);
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (s, b) = e.token_request(&refs).await;
        assert_eq!(s, status, "{b}");
        if let Some(code) = code {
            assert_eq!(entra_code(&b), ("invalid_client".into(), vec![code]));
        }
    }
}

#[tokio::test]
async fn malformed_token_requests() {
    let e = env().await;
    let client_id = e.emu.info().client_id.clone();
    let ok_scope = "https://vault.azure.net/.default";
    type Case<'a> = (Vec<(&'a str, &'a str)>, u16, &'a str, u64);
    let cases: Vec<Case> = vec![
        (vec![], 400, "invalid_request", 900144),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", &client_id),
                ("scope", ok_scope),
            ],
            400,
            "unsupported_grant_type",
            70003,
        ),
        (
            vec![("grant_type", "client_credentials"), ("scope", ok_scope)],
            400,
            "invalid_request",
            900144,
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", &client_id),
                ("scope", "https://vault.azure.net"),
                ("client_secret", "emulator-client-secret"),
            ],
            400,
            "invalid_scope",
            1002012,
        ),
    ];
    for (pairs, status, error, code) in cases {
        let (s, b) = e.token_request(&pairs).await;
        assert_eq!(
            (s, entra_code(&b)),
            (status, (error.to_string(), vec![code])),
            "{pairs:?}"
        );
    }
    // Another tenant.
    let (s, _, b) = e
        .raw
        .send(e.raw.post_form(
            "/other-tenant/oauth2/v2.0/token",
            &[("grant_type", "client_credentials")],
        ))
        .await;
    assert_eq!(
        (s, entra_code(&b)),
        (400, ("invalid_request".into(), vec![90002]))
    );
    // Not a POST.
    let path = format!("/{}/oauth2/v2.0/token", e.emu.info().tenant_id);
    let (s, b) = e.raw.get(&path, None).await;
    assert_eq!(
        (s, entra_code(&b)),
        (400, ("invalid_request".into(), vec![900561]))
    );
    e.still_serving().await;
}

#[tokio::test]
async fn managed_identity_endpoint_errors_and_string_expires_on() {
    let e = env().await;
    let info = e.emu.info().clone();
    let endpoint = |query: &str| format!("/msi/token?{query}");
    let call = |path: String, header: Option<&'static str>| {
        let mut req = e.raw.client.get(e.raw.url(&path));
        if let Some(h) = header {
            req = req.header("X-IDENTITY-HEADER", h);
        }
        req
    };
    let q = "api-version=2019-08-01&resource=https://vault.azure.net";
    let (s, _, b) = e.raw.send(call(endpoint(q), None)).await;
    assert_eq!((s, b["statusCode"].as_u64()), (401, Some(401)));
    let (s, _, _) = e.raw.send(call(endpoint(q), Some("wrong"))).await;
    assert_eq!(s, 401);
    let header: &'static str = Box::leak(info.identity_header.clone().into_boxed_str());
    let (s, _, b) = e
        .raw
        .send(call(
            endpoint("api-version=2017-09-01&resource=https://vault.azure.net"),
            Some(header),
        ))
        .await;
    assert_eq!((s, b["statusCode"].as_u64()), (400, Some(400)));
    let (s, _, _) = e
        .raw
        .send(call(endpoint("api-version=2019-08-01"), Some(header)))
        .await;
    assert_eq!(s, 400);
    let (s, _, b) = e
        .raw
        .send(call(
            endpoint(&format!("{q}&client_id=unknown")),
            Some(header),
        ))
        .await;
    assert_eq!(s, 400);
    assert_eq!(
        b["message"],
        "No User Assigned or Delegated Managed Identity found for specified ClientId/ResourceId/PrincipalId."
    );
    let (s, _, b) = e.raw.send(call(endpoint(q), Some(header))).await;
    assert_eq!(s, 200);
    assert!(
        b["expires_on"].is_string(),
        "expires_on must be a string: {b}"
    );
    assert_eq!(b["token_type"], "Bearer");
    assert_eq!(b["resource"], "https://vault.azure.net");
    assert_eq!(b["client_id"], info.client_id.as_str());
    let token = b["access_token"].as_str().expect("token").to_string();
    e.emu.set_secret("a", "1").expect("set");
    let (s, _) = e.raw.get(&format!("/secrets/a?{V}"), Some(&token)).await;
    assert_eq!(s, 200, "the managed identity token works at the vault");
}

#[tokio::test]
async fn bad_admin_requests_are_rejected() {
    let e = env().await;
    let admin = |path: &str| format!("/_emulator{path}");
    for body in [
        "{",
        r#"{"kind":"boom"}"#,
        r#"{"kind":"status"}"#,
        r#"{"kind":"status","status":503,"fraction":7}"#,
    ] {
        let (s, _, b) = e
            .raw
            .send(e.raw.client.post(e.raw.url(&admin("/faults"))).body(body))
            .await;
        assert_eq!(s, 400, "{body}");
        assert!(b["error"].is_string());
    }
    let (s, _) = e.raw.get(&admin("/nothing"), None).await;
    assert_eq!(s, 404);
    let (s, _, _) = e
        .raw
        .send(
            e.raw
                .client
                .put(e.raw.url(&admin("/secrets/bad_name")))
                .body(r#"{"value":"x"}"#),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _, _) = e
        .raw
        .send(
            e.raw
                .client
                .put(e.raw.url(&admin("/identities/nobody/permissions")))
                .body(r#"{"permissions":["get"]}"#),
        )
        .await;
    assert_eq!(s, 404);
    assert_eq!(
        e.emu.counts().get("total"),
        0,
        "admin calls are not counted"
    );
    e.still_serving().await;
}

#[tokio::test]
async fn garbage_on_the_socket_does_not_hurt() {
    use tokio::io::AsyncWriteExt;
    let e = env().await;
    let mut tcp = tokio::net::TcpStream::connect(e.emu.info().address)
        .await
        .expect("connect");
    tcp.write_all(b"GET / HTTP/1.1\r\n\r\n\x00\xff\xfe")
        .await
        .expect("write");
    drop(tcp);
    e.still_serving().await;
}

#[tokio::test]
async fn seed_with_bad_content_is_refused() {
    let cfg = EmulatorConfig {
        seed: Some(
            akvfs_emulator::Seed::from_json(r#"{"secrets":[{"name":"bad_name","value":"x"}]}"#)
                .expect("valid JSON"),
        ),
        ..Default::default()
    };
    let err = Emulator::start(cfg).await.expect_err("bad seed");
    assert!(err.to_string().contains("invalid name"), "{err}");
}
