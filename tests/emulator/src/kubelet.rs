//! Service-account tokens as kubelet obtains them for a pod.
//!
//! Service-account tokens as kubelet obtains them for a pod (the TokenRequest API with a pod
//! binding): signed by the same key and issuer as the federated tokens Entra ID accepts, with a
//! chosen subject, audience, lifetime and the `kubernetes.io` claim naming the pod.

use crate::config::FEDERATED_AUDIENCE;
use crate::state::Shared;
use crate::util;
use serde_json::{json, Map, Value};

/// A pod-bound service-account token to mint.
#[derive(Debug, Clone, Default)]
pub struct ServiceAccountToken {
    /// The pod's namespace.
    pub namespace: String,
    /// The service account's name.
    pub service_account: String,
    /// The pod the token is bound to (name, uid); None: a token bound to no pod.
    pub pod: Option<(String, String)>,
    /// `sub` instead of `system:serviceaccount:<namespace>:<service_account>`.
    pub subject: Option<String>,
    /// `aud` (default `api://AzureADTokenExchange`).
    pub audience: Option<String>,
    /// Seconds from now until `exp` (default 3600; negative: already expired).
    pub lifetime_secs: Option<i64>,
}

impl ServiceAccountToken {
    /// A one-hour token for `namespace/service_account` bound to the pod `name` with `uid`.
    pub fn for_pod(namespace: &str, service_account: &str, name: &str, uid: &str) -> Self {
        ServiceAccountToken {
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
            pod: Some((name.to_string(), uid.to_string())),
            ..Default::default()
        }
    }

    /// The subject Entra ID's federated credential must name for this token.
    pub fn subject(&self) -> String {
        self.subject.clone().unwrap_or_else(|| {
            format!(
                "system:serviceaccount:{}:{}",
                self.namespace, self.service_account
            )
        })
    }
}

impl Shared {
    /// Mints a service-account token as the cluster's API server would for kubelet.
    pub(crate) fn mint_service_account_token(&self, spec: &ServiceAccountToken) -> String {
        let now = util::now_unix();
        let exp = now.saturating_add(spec.lifetime_secs.unwrap_or(3600));
        let mut k8s = Map::new();
        k8s.insert("namespace".into(), Value::from(spec.namespace.clone()));
        k8s.insert(
            "serviceaccount".into(),
            json!({"name": spec.service_account, "uid": util::uuid_from_name(&spec.subject())}),
        );
        if let Some((name, uid)) = &spec.pod {
            k8s.insert("pod".into(), json!({"name": name, "uid": uid}));
        }
        let mut c = Map::new();
        c.insert(
            "aud".into(),
            json!([spec
                .audience
                .clone()
                .unwrap_or_else(|| FEDERATED_AUDIENCE.to_string())]),
        );
        c.insert("exp".into(), Value::from(exp));
        c.insert("iat".into(), Value::from(now.min(exp)));
        c.insert("nbf".into(), Value::from(now.min(exp)));
        c.insert(
            "iss".into(),
            Value::from(self.settings.federated_issuer.clone()),
        );
        c.insert("jti".into(), Value::from(util::random_uuid()));
        c.insert("sub".into(), Value::from(spec.subject()));
        c.insert("kubernetes.io".into(), Value::Object(k8s));
        self.federated_key.sign(&c)
    }
}
