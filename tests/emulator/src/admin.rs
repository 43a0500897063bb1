//! The admin API under `/_emulator/`: test controls over HTTPS.
//!
//! The admin API under `/_emulator/`: counters, faults, seeding, direct secret and identity
//! changes, token settings, token minting and federated token rotation. For tests only: it needs
//! no authentication (it is still served over HTTPS) and its calls are never counted.
//!
//! Errors are `{"error": "<message>"}` with status 400 (bad request) or 404 (unknown path/item).

use crate::config::{Permissions, Seed};
use crate::control::{SecretSpec, SecretUpdate};
use crate::faults::Fault;
use crate::http::{empty, json, query_get, query_pairs, read_body, segments, Reply, Resp};
use crate::state::{FederatedTokenSpec, Shared, TokenSpec};
use crate::util;
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

fn bad(message: impl std::fmt::Display) -> Resp {
    json(400, &json!({ "error": message.to_string() }))
}

fn not_found(message: impl std::fmt::Display) -> Resp {
    json(404, &json!({ "error": message.to_string() }))
}

async fn parse<T: DeserializeOwned>(body: Incoming) -> Result<T, Resp> {
    let bytes = read_body(body, crate::http::MAX_BODY_BYTES)
        .await
        .map_err(|_| bad("the request body could not be read or is too large"))?;
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    serde_json::from_slice(text).map_err(|e| bad(format!("invalid JSON body: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PermissionsBody {
    permissions: Permissions,
    #[serde(default)]
    denied_secrets: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamesBody {
    permissions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecondsBody {
    seconds: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThrottleBody {
    requests_per_10s: u32,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    lifetime_secs: Option<i64>,
    #[serde(default)]
    audience: Option<String>,
    #[serde(default)]
    tenant_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FederatedBody {
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    audience: Option<String>,
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    lifetime_secs: Option<i64>,
}

/// Handles an admin request.
pub(crate) async fn handle(shared: &Arc<Shared>, parts: Parts, body: Incoming) -> Reply {
    match route(shared, &parts, body).await {
        Ok(resp) | Err(resp) => resp.into(),
    }
}

async fn route(shared: &Arc<Shared>, parts: &Parts, body: Incoming) -> Result<Resp, Resp> {
    let path = parts.uri.path();
    let mut segs: Vec<&str> = segments(path);
    if segs.last() == Some(&"") {
        segs.pop();
    }
    let rest = &segs[1..];
    let query = query_pairs(parts.uri.query());
    let m = &parts.method;
    let resp = match (m, rest) {
        (&Method::GET, ["info"]) => json(200, &json!(shared.ready_info())),
        (&Method::GET, ["counts"]) => json(200, &json!(shared.lock().counts)),
        (&Method::POST, ["counts", "reset"]) | (&Method::DELETE, ["counts"]) => {
            let mut st = shared.lock();
            let before = std::mem::replace(&mut st.counts, crate::counts::Counts::zero());
            json(200, &json!(before))
        }
        (&Method::GET, ["faults"]) => json(200, &json!(shared.lock().faults.list())),
        (&Method::POST, ["faults"]) => {
            let fault: Fault = parse(body).await?;
            let id = shared.lock().faults.add(fault).map_err(bad)?;
            json(200, &json!({ "id": id }))
        }
        (&Method::DELETE, ["faults"]) => {
            shared.lock().faults.clear();
            empty(204)
        }
        (&Method::POST, ["seed"]) => {
            let seed: Seed = parse(body).await?;
            shared.apply_seed(&seed).map_err(bad)?;
            empty(204)
        }
        (&Method::GET, ["secrets"]) => json(200, &json!({ "secrets": shared.secrets_view() })),
        (&Method::DELETE, ["secrets"]) => {
            shared.lock().store.clear();
            empty(204)
        }
        (&Method::PUT, ["secrets", name]) => {
            let spec: SecretSpec = parse(body).await?;
            let version = shared.put_secret(name, spec).map_err(bad)?;
            json(
                200,
                &json!({
                    "name": name,
                    "version": version,
                    "id": format!("{}/secrets/{name}/{version}", shared.settings.vault_url),
                }),
            )
        }
        (&Method::PATCH, ["secrets", name]) => {
            let update: SecretUpdate = parse(body).await?;
            let version = shared.patch_secret(name, update).map_err(not_found)?;
            json(200, &json!({ "name": name, "version": version }))
        }
        (&Method::DELETE, ["secrets", name]) => {
            let purge = query_get(&query, "purge").is_some_and(|v| v == "true" || v == "1");
            shared.remove_secret(name, purge).map_err(not_found)?;
            empty(204)
        }
        (&Method::POST, ["certificates", name]) => {
            let v: crate::config::SeedCertVersion = parse(body).await?;
            let version = shared.add_certificate_version(name, &v).map_err(bad)?;
            let url = &shared.settings.vault_url;
            json(
                200,
                &json!({"name": name, "version": version,
                        "id": format!("{url}/certificates/{name}/{version}")}),
            )
        }
        (&Method::PATCH, ["certificates", name]) => {
            let v: Value = parse(body).await?;
            let version = v.get("version").and_then(Value::as_str);
            let enabled = v.get("enabled").and_then(Value::as_bool).unwrap_or(true);
            shared
                .set_certificate_enabled(name, version, enabled)
                .map_err(not_found)?;
            empty(204)
        }
        (&Method::POST, ["keys", name]) => {
            let v: crate::config::SeedKeyVersion = parse(body).await?;
            let version = shared.add_key_version(name, &v).map_err(bad)?;
            let url = &shared.settings.vault_url;
            json(
                200,
                &json!({"name": name, "version": version,
                        "kid": format!("{url}/keys/{name}/{version}")}),
            )
        }
        (&Method::POST, ["test-chain"]) => {
            let v: Value = parse(body).await?;
            let kty = v.get("kty").and_then(Value::as_str).unwrap_or("RSA");
            let cn = v
                .get("cn")
                .and_then(Value::as_str)
                .unwrap_or("leaf.example.com");
            let chain = crate::objcontrol::chain_json(
                kty,
                v.get("key_size").and_then(Value::as_u64),
                v.get("crv").and_then(Value::as_str),
                cn,
            )
            .map_err(bad)?;
            json(200, &chain)
        }
        (&Method::GET, ["identities"]) => {
            let ids: Vec<_> = shared.lock().identities.values().cloned().collect();
            json(200, &json!(ids))
        }
        (&Method::PUT, ["identities", client_id]) => {
            let mut body: Value = parse(body).await?;
            if let Value::Object(m) = &mut body {
                m.entry("client_id")
                    .or_insert_with(|| Value::from(client_id.to_string()));
            }
            let identity: crate::config::Identity =
                serde_json::from_value(body).map_err(|e| bad(format!("invalid identity: {e}")))?;
            if !identity.client_id.eq_ignore_ascii_case(client_id) {
                return Err(bad("client_id in the body differs from the path"));
            }
            shared.upsert_identity(identity).map_err(bad)?;
            empty(204)
        }
        (&Method::DELETE, ["identities", client_id]) => {
            shared.remove_identity(client_id).map_err(not_found)?;
            empty(204)
        }
        (&Method::PUT, ["identities", client_id, "permissions"]) => {
            let b: PermissionsBody = parse(body).await?;
            shared
                .set_permissions(client_id, b.permissions, b.denied_secrets)
                .map_err(not_found)?;
            empty(204)
        }
        (&Method::POST, ["identities", client_id, action @ ("grant" | "revoke")]) => {
            let b: NamesBody = parse(body).await?;
            let grant = *action == "grant";
            let now = shared
                .change_permissions(client_id, &b.permissions, grant)
                .map_err(|e| {
                    if e.starts_with("no identity") {
                        not_found(e)
                    } else {
                        bad(e)
                    }
                })?;
            json(200, &json!({ "permissions": now }))
        }
        (&Method::PUT, ["token-lifetime"]) => {
            let b: SecondsBody = parse(body).await?;
            if b.seconds == 0 || b.seconds > crate::state::MAX_TOKEN_LIFETIME.as_secs() {
                return Err(bad(format!(
                    "seconds must be from 1 to {}",
                    crate::state::MAX_TOKEN_LIFETIME.as_secs()
                )));
            }
            shared.lock().token_lifetime = Duration::from_secs(b.seconds);
            empty(204)
        }
        (&Method::PUT, ["throttle"]) => {
            let b: ThrottleBody = parse(body).await?;
            if b.requests_per_10s == 0 {
                return Err(bad("requests_per_10s must be at least 1"));
            }
            shared.lock().throttle.set_budget(b.requests_per_10s);
            empty(204)
        }
        (&Method::POST, ["tokens"]) => {
            let b: TokenBody = parse(body).await?;
            let lifetime = shared.lock().token_lifetime;
            let spec = TokenSpec {
                client_id: b
                    .client_id
                    .unwrap_or_else(|| shared.settings.default_client_id.clone()),
                lifetime_secs: b.lifetime_secs.unwrap_or(lifetime.as_secs() as i64),
                audience: b.audience,
                tenant_id: b.tenant_id,
            };
            let (token, exp) = shared.mint_token(&spec);
            if query_get(&query, "format") == Some("az") {
                json(
                    200,
                    &json!({
                        "accessToken": token,
                        "expiresOn": util::az_cli_time(exp),
                        "expires_on": exp,
                        "subscription": "00000000-0000-0000-0000-000000000000",
                        "tenant": shared.settings.tenant_id,
                        "tokenType": "Bearer",
                    }),
                )
            } else {
                json(
                    200,
                    &json!({
                        "access_token": token,
                        "expires_on": exp,
                        "token_type": "Bearer",
                    }),
                )
            }
        }
        (&Method::POST, ["federated-token"]) => {
            let b: FederatedBody = parse(body).await?;
            let token = shared.mint_assertion(&FederatedTokenSpec {
                subject: b.subject,
                audience: b.audience,
                issuer: b.issuer,
                lifetime_secs: b.lifetime_secs,
            });
            json(200, &json!({ "token": token }))
        }
        (&Method::POST, ["federated-token", "rotate"]) => {
            shared
                .rotate_federated_token()
                .map_err(|e| bad(format!("cannot write the federated token file: {e}")))?;
            json(
                200,
                &json!({ "federated_token_file": shared.settings.federated_token_file }),
            )
        }
        _ => return Err(not_found(format!("no admin endpoint {m} {path}"))),
    };
    Ok(resp)
}
