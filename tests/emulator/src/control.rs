//! Test controls shared by the admin API and the [`crate::Emulator`] handle.
//!
//! Test controls shared by the admin API and the [`crate::Emulator`] handle, so both change the
//! state in exactly the same way.

use crate::config::{Identity, Permissions};
use crate::secret::AttributeUpdate;
use crate::state::{FederatedTokenSpec, Shared, TokenSpec};
use crate::util;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

crate::props::with_props! {
    /// A secret version to store directly (admin `PUT /_emulator/secrets/{name}`).
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct SecretSpec {
        /// The value.
        pub value: String,
    }
}

impl SecretSpec {
    /// A plain enabled value.
    pub fn value(value: &str) -> Self {
        SecretSpec {
            value: value.to_string(),
            ..Default::default()
        }
    }
}

crate::props::with_props! {
    /// Attribute changes applied directly (admin `PATCH /_emulator/secrets/{name}`); only the
    /// properties given change.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct SecretUpdate {
        /// Version to change (None: the latest).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub version: Option<String>,
    }
}

/// A version as shown by `GET /_emulator/secrets` and [`crate::Emulator::secret`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionView {
    /// Version id.
    pub version: String,
    /// Value.
    pub value: String,
    /// Enabled.
    pub enabled: bool,
    /// `contentType`.
    #[serde(rename = "contentType", skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// Expiry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Not-before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Created.
    pub created: i64,
    /// Updated.
    pub updated: i64,
}

/// A secret as shown by `GET /_emulator/secrets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretView {
    /// Name (original case).
    pub name: String,
    /// Whether it is soft-deleted.
    pub deleted: bool,
    /// Versions, oldest first.
    pub versions: Vec<VersionView>,
}

impl Shared {
    pub(crate) fn put_secret(&self, name: &str, spec: SecretSpec) -> Result<String, String> {
        let new = spec.props().new_version(spec.value, None, None);
        self.set_secret(name, new).map_err(|e| e.message)
    }

    pub(crate) fn patch_secret(&self, name: &str, update: SecretUpdate) -> Result<String, String> {
        let (_, v) = self
            .lock()
            .store
            .update(
                name,
                update.version.as_deref(),
                AttributeUpdate::from(update.props()),
                util::now_unix(),
            )
            .map_err(|e| e.message)?;
        Ok(v.id)
    }

    pub(crate) fn remove_secret(&self, name: &str, purge: bool) -> Result<(), String> {
        let mut st = self.lock();
        let now = util::now_unix();
        if st.store.get_deleted(name).is_err() {
            st.store.delete(name, now).map_err(|e| e.message)?;
        }
        if purge {
            st.store.purge(name).map_err(|e| e.message)?;
        }
        Ok(())
    }

    pub(crate) fn secrets_view(&self) -> Vec<SecretView> {
        let st = self.lock();
        st.store
            .live()
            .into_iter()
            .chain(st.store.deleted())
            .map(|(_, s)| SecretView {
                name: s.name.clone(),
                deleted: s.deleted.is_some(),
                versions: s
                    .versions
                    .iter()
                    .map(|v| VersionView {
                        version: v.id.clone(),
                        value: v.value.clone(),
                        enabled: v.enabled,
                        content_type: v.content_type.clone(),
                        tags: v.tags.clone(),
                        exp: v.exp,
                        nbf: v.nbf,
                        created: v.created,
                        updated: v.updated,
                    })
                    .collect(),
            })
            .collect()
    }

    pub(crate) fn upsert_identity(&self, identity: Identity) -> Result<(), String> {
        if identity.client_id.is_empty() {
            return Err("client_id must not be empty".into());
        }
        self.lock()
            .identities
            .insert(identity.client_id.to_ascii_lowercase(), identity);
        Ok(())
    }

    pub(crate) fn remove_identity(&self, client_id: &str) -> Result<(), String> {
        self.lock()
            .identities
            .remove(&client_id.to_ascii_lowercase())
            .map(|_| ())
            .ok_or_else(|| format!("no identity with client id {client_id}"))
    }

    pub(crate) fn set_permissions(
        &self,
        client_id: &str,
        permissions: Permissions,
        denied_secrets: Option<Vec<String>>,
    ) -> Result<(), String> {
        let mut st = self.lock();
        let identity = st
            .identities
            .get_mut(&client_id.to_ascii_lowercase())
            .ok_or_else(|| format!("no identity with client id {client_id}"))?;
        identity.permissions = permissions;
        if let Some(denied) = denied_secrets {
            identity.denied_secrets = denied;
        }
        Ok(())
    }

    /// Adds (`grant`) or removes permissions of an identity, keeping the others.
    pub(crate) fn change_permissions(
        &self,
        client_id: &str,
        names: &[String],
        grant: bool,
    ) -> Result<Permissions, String> {
        let change = Permissions::from_names(names)?;
        let mut st = self.lock();
        let identity = st
            .identities
            .get_mut(&client_id.to_ascii_lowercase())
            .ok_or_else(|| format!("no identity with client id {client_id}"))?;
        let p = &mut identity.permissions;
        for (on, slot) in [
            (change.get, &mut p.get),
            (change.list, &mut p.list),
            (change.set, &mut p.set),
            (change.delete, &mut p.delete),
            (change.purge, &mut p.purge),
            (change.recover, &mut p.recover),
        ] {
            if on {
                *slot = grant;
            }
        }
        Ok(*p)
    }

    /// Mints an access token as the token endpoint would, for any client id (known or not).
    pub(crate) fn mint_token(&self, spec: &TokenSpec) -> (String, i64) {
        let identity = self
            .identity(&spec.client_id)
            .unwrap_or_else(|| Identity::new(&spec.client_id));
        self.mint_access_token(&identity, spec)
    }

    pub(crate) fn mint_assertion(&self, spec: &FederatedTokenSpec) -> String {
        self.mint_federated_token(spec).0
    }
}
