//! What the vault says about certificates, keys and versions, in akvfs's own
//! types (no Azure SDK type), and the 403 advice for them.

use crate::objects::jwk::PublicJwk;
use crate::secret::{SecretName, VersionId};

/// One version of a secret, certificate or key, as a versions listing
/// reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionItem {
    pub version: VersionId,
    pub enabled: bool,
    /// Unix seconds.
    pub created: Option<i64>,
    pub updated: Option<i64>,
}

/// A certificate's public part (`GET /certificates/{name}/{version}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateBundle {
    pub name: SecretName,
    pub version: VersionId,
    pub id: String,
    /// The key backing it, `https://{vault}/keys/{name}/{version}`.
    pub kid: Option<String>,
    /// The secret holding its private key, `https://{vault}/secrets/{name}/{version}`.
    pub sid: Option<String>,
    /// SHA-1 thumbprint of `cer`.
    pub x5t: Vec<u8>,
    /// The leaf certificate, DER.
    pub cer: Vec<u8>,
    pub enabled: bool,
    pub created: Option<i64>,
    pub updated: Option<i64>,
    pub expires: Option<i64>,
    pub not_before: Option<i64>,
}

/// A key's public part (`GET /keys/{name}/{version}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyBundle {
    pub name: SecretName,
    pub version: VersionId,
    pub jwk: PublicJwk,
    pub enabled: bool,
    pub created: Option<i64>,
    pub updated: Option<i64>,
}

/// The version at the end of an object id (`.../{kind}/{name}/{version}`),
/// checked to name `name`: Key Vault matches names case-insensitively, file
/// names are exact.
pub fn version_of(id: &str, kind: &str, name: &SecretName) -> Option<VersionId> {
    let rest = id.split(&format!("/{kind}/")).nth(1)?;
    let mut parts = rest.split('/');
    (parts.next()? == name.as_str())
        .then(|| parts.next())
        .flatten()
        .filter(|v| !v.is_empty())
        .map(VersionId::new)
}

/// A 403's message for an operation on certificates or keys: which
/// permission to grant (RBAC data action and access policy).
pub(crate) fn forbidden_text(kind: &str, verb: &str, detail: &str) -> String {
    if detail.starts_with("ForbiddenByFirewall") {
        return format!("the vault's firewall refuses this client's network address (403 {detail}); allow the node's outbound IP address or subnet in the vault's networking settings, or reach it through a private endpoint");
    }
    let (role, action) = match kind {
        "certificates" => ("Key Vault Certificate User", "certificates/read"),
        "keys" => ("Key Vault Crypto User", "keys/read"),
        _ => ("Key Vault Secrets User", "secrets/readMetadata"),
    };
    let policy = match kind {
        "certificates" => "certificate",
        "keys" => "key",
        _ => "secret",
    };
    format!("the identity is not allowed to {verb} {kind} (403 Forbidden: {detail}); grant it {action} (the \"{role}\" role) or a {verb} {policy} access policy")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_taken_from_ids_of_the_exact_name() {
        let name = SecretName::parse("web").unwrap();
        assert_eq!(
            version_of(
                "https://v.vault.azure.net/certificates/web/abc",
                "certificates",
                &name
            ),
            Some(VersionId::new("abc"))
        );
        assert_eq!(
            version_of(
                "https://v.vault.azure.net/certificates/WEB/abc",
                "certificates",
                &name
            ),
            None
        );
        assert_eq!(version_of("https://v/keys/web/", "keys", &name), None);
    }

    #[test]
    fn forbidden_names_the_permission() {
        let t = forbidden_text("certificates", "get", "ForbiddenByRbac");
        assert!(t.contains("certificates/read"), "{t}");
        let t = forbidden_text("keys", "get", "AccessDenied");
        assert!(
            t.contains("keys/read") && t.contains("key access policy"),
            "{t}"
        );
    }
}
