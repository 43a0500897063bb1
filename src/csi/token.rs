//! The pod's service-account token: its claims checked before any use, its exchange with Entra
//! ID for a Key Vault token (which is where its signature is verified: the plugin has no cluster
//! key), and the credential an identity's mount reads through.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::http::{ClientMethodOptions, Transport};
use azure_identity::{
    ClientAssertion, ClientAssertionCredential, ClientAssertionCredentialOptions,
};
use zeroize::Zeroizing;

use super::request::{PodInfo, AUDIENCE};
use super::{CsiError, Refusal};
use crate::auth::client_options;
use crate::auth::{classify_token_error, is_key_vault_scope, FreshToken, VAULT_SCOPE};
use crate::sync::lock;

/// Clock difference tolerated between the cluster and this node.
const SKEW_SECS: i64 = 60;
/// How long an exchange may take before it counts as Entra ID being unreachable.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(serde::Deserialize)]
struct Claims {
    #[serde(default)]
    aud: Audiences,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    #[serde(default)]
    sub: String,
    #[serde(rename = "kubernetes.io")]
    kubernetes: Option<Kubernetes>,
}

#[derive(serde::Deserialize, Default)]
#[serde(untagged)]
enum Audiences {
    One(String),
    Many(Vec<String>),
    #[default]
    None,
}

#[derive(serde::Deserialize)]
struct Kubernetes {
    pod: Option<Named>,
}

#[derive(serde::Deserialize)]
struct Named {
    name: String,
    uid: String,
}

/// Checks the token's claims against the pod it was given for. Returns its
/// expiry (Unix seconds). Messages never quote the token.
pub fn check(token: &str, pod: &PodInfo, now: i64) -> Result<i64, Refusal> {
    let refuse = |m: String| Refusal::Unauthenticated(m);
    let claims = decode(token).ok_or_else(|| {
        refuse("the service-account token is not a JWT; check the CSIDriver's tokenRequests".into())
    })?;
    let audiences = match claims.aud {
        Audiences::One(a) => vec![a],
        Audiences::Many(a) => a,
        Audiences::None => Vec::new(),
    };
    if !audiences.iter().any(|a| a == AUDIENCE) {
        return Err(refuse(format!(
            "the service-account token is for audience {}, not {AUDIENCE}; check the CSIDriver's tokenRequests",
            audiences.join(",")
        )));
    }
    let exp = claims
        .exp
        .ok_or_else(|| refuse("the service-account token has no expiry (exp)".into()))?;
    if exp <= now {
        return Err(refuse(format!(
            "the service-account token expired {} s ago; kubelet sends a fresh one on the next republish",
            now - exp
        )));
    }
    if claims.nbf.is_some_and(|t| t > now + SKEW_SECS)
        || claims.iat.is_some_and(|t| t > now + SKEW_SECS)
    {
        return Err(refuse(
            "the service-account token is not valid yet (nbf/iat in the future); check the node's clock".into(),
        ));
    }
    let subject = pod.subject();
    if claims.sub != subject {
        return Err(refuse(format!(
            "the service-account token's subject {:?} is not the pod's service account {subject:?}",
            claims.sub
        )));
    }
    if let Some(bound) = claims.kubernetes.and_then(|k| k.pod) {
        if bound.name != pod.name || bound.uid != pod.uid {
            return Err(refuse(format!(
                "the service-account token is bound to pod {} ({}), not to {}/{} ({})",
                bound.name, bound.uid, pod.namespace, pod.name, pod.uid
            )));
        }
    }
    Ok(exp)
}

fn decode(jwt: &str) -> Option<Claims> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .ok()?,
    );
    serde_json::from_slice(&bytes).ok()
}

/// The assertion an identity presents: the newest token among its pods',
/// swapped in place on republish.
#[derive(Clone, Default)]
pub struct Assertion(Arc<Mutex<Zeroizing<String>>>);

impl std::fmt::Debug for Assertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Assertion(redacted)")
    }
}

impl Assertion {
    pub fn new(token: &str) -> Assertion {
        Assertion(Arc::new(Mutex::new(Zeroizing::new(token.to_string()))))
    }

    pub fn set(&self, token: &str) {
        let mut slot = lock(&self.0);
        *slot = Zeroizing::new(token.to_string());
    }
}

#[async_trait::async_trait]
impl ClientAssertion for Assertion {
    async fn secret(
        &self,
        _options: Option<ClientMethodOptions<'_>>,
    ) -> azure_core::Result<String> {
        // The SDK takes a plain String for the request's lifetime.
        Ok(lock(&self.0).as_str().to_string())
    }
}

fn assertion_credential(
    tenant: &str,
    client_id: &str,
    assertion: Assertion,
    transport: &Transport,
) -> azure_core::Result<Arc<ClientAssertionCredential<Assertion>>> {
    ClientAssertionCredential::new(
        tenant.to_string(),
        client_id.to_string(),
        assertion,
        Some(ClientAssertionCredentialOptions {
            client_options: client_options(transport),
        }),
    )
}

/// Exchanges `token` with Entra ID for a Key Vault token for `client_id`:
/// proof that Entra ID accepts this very token for that identity. The
/// Key Vault token obtained is dropped.
pub async fn exchange(
    tenant: &str,
    client_id: &str,
    token: &str,
    transport: &Transport,
) -> Result<(), Refusal> {
    let credential = assertion_credential(tenant, client_id, Assertion::new(token), transport)
        .map_err(|e| CsiError::ExchangeSetup {
            client_id: client_id.to_string(),
            tenant: tenant.to_string(),
            source: Box::new(e),
        })?;
    let result =
        tokio::time::timeout(EXCHANGE_TIMEOUT, credential.get_token(&[VAULT_SCOPE], None)).await;
    match result {
        Err(_) => Err(Refusal::Unavailable(format!(
            "Entra ID did not answer the token exchange for client id {client_id} in tenant {tenant} within {} s; check the node's access to the authority host",
            EXCHANGE_TIMEOUT.as_secs()
        ))),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Refusal::Exchange {
            client_id: client_id.to_string(),
            tenant: tenant.to_string(),
            failure: classify_token_error(&e),
        }),
    }
}

/// An identity mount's credential: client assertion with its [`Assertion`],
/// only for Key Vault scopes, started over when a request carries
/// [`FreshToken`].
pub struct PodCredential {
    tenant: String,
    client_id: String,
    assertion: Assertion,
    transport: Transport,
    inner: Mutex<Arc<ClientAssertionCredential<Assertion>>>,
}

impl std::fmt::Debug for PodCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodCredential")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl PodCredential {
    pub fn new(
        tenant: &str,
        client_id: &str,
        assertion: Assertion,
        transport: &Transport,
    ) -> Result<PodCredential, CsiError> {
        let inner =
            assertion_credential(tenant, client_id, assertion.clone(), transport).map_err(|e| {
                CsiError::Credential {
                    client_id: client_id.to_string(),
                    source: Box::new(e),
                }
            })?;
        Ok(PodCredential {
            tenant: tenant.to_string(),
            client_id: client_id.to_string(),
            assertion,
            transport: transport.clone(),
            inner: Mutex::new(inner),
        })
    }
}

#[async_trait::async_trait]
impl TokenCredential for PodCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        if let Some(foreign) = scopes.iter().find(|s| !is_key_vault_scope(s)) {
            return Err(azure_core::Error::new(
                azure_core::error::ErrorKind::Credential,
                crate::auth::ForeignScope {
                    scope: foreign.to_string(),
                },
            ));
        }
        let fresh = options
            .as_ref()
            .is_some_and(|o| o.method_options.context.value::<FreshToken>().is_some());
        if fresh {
            if let Ok(c) = assertion_credential(
                &self.tenant,
                &self.client_id,
                self.assertion.clone(),
                &self.transport,
            ) {
                *lock(&self.inner) = c;
            }
        }
        let inner = Arc::clone(&lock(&self.inner));
        inner.get_token(scopes, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn jwt(claims: serde_json::Value) -> String {
        let e = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        format!(
            "{}.{}.sig",
            e(&serde_json::json!({"alg": "RS256"})),
            e(&claims)
        )
    }

    fn pod() -> PodInfo {
        PodInfo {
            name: "p".into(),
            namespace: "ns".into(),
            uid: "u".into(),
            service_account: "sa".into(),
        }
    }

    #[test]
    fn claims_are_checked_against_the_pod() {
        let now = 1_000_000;
        let good = serde_json::json!({
            "aud": [AUDIENCE], "exp": now + 600, "iat": now, "nbf": now,
            "sub": "system:serviceaccount:ns:sa",
            "kubernetes.io": {"pod": {"name": "p", "uid": "u"}}
        });
        assert_eq!(check(&jwt(good.clone()), &pod(), now).ok(), Some(now + 600));
        let with = |k: &str, v: serde_json::Value| {
            let mut c = good.clone();
            c[k] = v;
            check(&jwt(c), &pod(), now)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(with("aud", serde_json::json!("other")).contains("audience other"));
        assert!(with("exp", serde_json::json!(now - 1)).contains("expired"));
        assert!(with("nbf", serde_json::json!(now + 3600)).contains("not valid yet"));
        assert!(
            with("sub", serde_json::json!("system:serviceaccount:ns:x")).contains("not the pod's")
        );
        assert!(with(
            "kubernetes.io",
            serde_json::json!({"pod": {"name": "q", "uid": "u"}})
        )
        .contains("bound to pod q"));
        assert!(check("garbage", &pod(), now).is_err());
    }
}
