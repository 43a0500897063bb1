//! Access checks: the caller's policy on secrets, certificates or keys, and the names it is denied.

use crate::config::Identity;
use crate::state::{Caller, Shared};
use crate::vault_error::VaultError;

/// How an identity's access policy answers for one collection.
pub(crate) struct Policy {
    /// The collection's word in messages, RBAC actions and resource paths.
    pub collection: &'static str,
    /// Whether the identity holds a permission on the collection.
    pub allows: fn(&Identity, &str) -> bool,
    /// The names (case-insensitive) the identity may not touch even with the permission.
    pub denied: fn(&Identity) -> &[String],
    /// The RBAC data action named when a permission is refused for a denied name.
    pub action: fn(&str) -> &str,
}

/// The secrets' policy.
pub(crate) const SECRETS: Policy = Policy {
    collection: "secrets",
    allows: |i, permission| i.permissions.allows(permission),
    denied: |i| &i.denied_secrets,
    action: |permission| match permission {
        "get" => "getSecret",
        "list" => "readMetadata",
        "set" => "setSecret",
        "delete" => "delete",
        "purge" => "purge",
        "backup" => "backup",
        "restore" => "restore",
        _ => "recover",
    },
};

/// The RBAC action of a certificate or key permission.
fn object_action(permission: &str) -> &str {
    match permission {
        "list" => "readMetadata",
        "get" => "read",
        other => other,
    }
}

/// The certificates' policy.
pub(crate) const CERTIFICATES: Policy = Policy {
    collection: "certificates",
    allows: |i, permission| i.certificates.allows(permission),
    denied: |i| &i.denied_certificates,
    action: object_action,
};

/// The keys' policy.
pub(crate) const KEYS: Policy = Policy {
    collection: "keys",
    allows: |i, permission| i.keys.allows(permission),
    denied: |i| &i.denied_keys,
    action: object_action,
};

/// 403 unless the caller's identity has `permission` under `policy` and is not denied `name`.
pub(crate) fn authorize(
    shared: &Shared,
    caller: &Caller,
    policy: &Policy,
    permission: &str,
    name: Option<&str>,
) -> Result<(), VaultError> {
    let tenant = &shared.settings.tenant_id;
    let who = format!(
        "appid={};oid={};iss=https://sts.windows.net/{tenant}/",
        caller.client_id, caller.object_id
    );
    let vault = vault_name(&shared.settings.vault_url);
    let collection = policy.collection;
    let identity = shared.identity(&caller.client_id);
    let allowed = identity
        .as_ref()
        .is_some_and(|i| (policy.allows)(i, permission));
    if !allowed {
        return Err(VaultError::new(
            403,
            "Forbidden",
            format!(
                "The user, group or application '{who}' does not have {collection} {permission} permission on key \
                 vault '{vault};location=emulator'. For help resolving this issue, please see \
                 https://go.microsoft.com/fwlink/?linkid=2125287"
            ),
        )
        .with_inner("ForbiddenByPolicy"));
    }
    if let (Some(identity), Some(name)) = (identity, name) {
        if (policy.denied)(&identity)
            .iter()
            .any(|d| d.eq_ignore_ascii_case(name))
        {
            let action = (policy.action)(permission);
            return Err(VaultError::new(
                403,
                "Forbidden",
                format!(
                    "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny \
                     assignments or role definitions were changed recently, please observe propagation \
                     time.\r\nCaller: {who}\r\nAction: 'Microsoft.KeyVault/vaults/{collection}/{action}/action'\r\n\
                     Resource: '/vaults/{vault}/{collection}/{}'\r\nAssignment: (not found)\r\nDenyAssignmentId: \
                     null\r\nDecisionReason: 'DeniedWithNoValidRBAC' \r\nVault: {vault};location=emulator\r\n",
                    name.to_ascii_lowercase()
                ),
            )
            .with_inner("ForbiddenByRbac"));
        }
    }
    Ok(())
}

/// The first DNS label of the vault URL's host (`myvault` of `https://myvault.vault.azure.net`).
pub(crate) fn vault_name(vault_url: &str) -> String {
    let host = vault_url
        .trim_start_matches("https://")
        .split(['/', ':'])
        .next()
        .unwrap_or("emulator");
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return "emulator".to_string();
    }
    host.split('.').next().unwrap_or("emulator").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_vaults() {
        assert_eq!(
            vault_name("https://myvault.vault.azure.net:8443"),
            "myvault"
        );
        assert_eq!(vault_name("https://127.0.0.1:8443"), "emulator");
    }
}
