//! JSON pieces answered alike by secrets, certificates, keys and backups.

use crate::objects::Attrs;
use crate::secret::{Deletion, Version};
use crate::state::Shared;
use crate::store::{RECOVERABLE_DAYS, RECOVERY_LEVEL};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// A version's state and times, as they appear in `attributes` (and in a backup's versions).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Times {
    pub enabled: bool,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub created: i64,
    pub updated: i64,
}

impl Times {
    /// `enabled`, `nbf`, `exp`, `created`, `updated`, in Key Vault's order; an absent time is
    /// left out.
    pub(crate) fn insert_into(self, m: &mut Map<String, Value>) {
        m.insert("enabled".into(), Value::from(self.enabled));
        if let Some(nbf) = self.nbf {
            m.insert("nbf".into(), Value::from(nbf));
        }
        if let Some(exp) = self.exp {
            m.insert("exp".into(), Value::from(exp));
        }
        m.insert("created".into(), Value::from(self.created));
        m.insert("updated".into(), Value::from(self.updated));
    }

    /// The `attributes` object: the times and the vault's recovery settings.
    pub(crate) fn attributes(self) -> Value {
        let mut m = Map::new();
        self.insert_into(&mut m);
        m.insert("recoveryLevel".into(), Value::from(RECOVERY_LEVEL));
        m.insert("recoverableDays".into(), Value::from(RECOVERABLE_DAYS));
        Value::Object(m)
    }
}

impl From<&Version> for Times {
    fn from(v: &Version) -> Times {
        Times {
            enabled: v.enabled,
            nbf: v.nbf,
            exp: v.exp,
            created: v.created,
            updated: v.updated,
        }
    }
}

impl From<&Attrs> for Times {
    fn from(a: &Attrs) -> Times {
        Times {
            enabled: a.enabled,
            nbf: a.nbf,
            exp: a.exp,
            created: a.created,
            updated: a.updated,
        }
    }
}

/// Adds `tags` when the version has any.
pub(crate) fn insert_tags(m: &mut Map<String, Value>, tags: &Option<BTreeMap<String, String>>) {
    if let Some(tags) = tags {
        m.insert("tags".into(), json!(tags));
    }
}

/// A deleted object's answer: `value` (its newest version) with `recoveryId` under
/// `/{deleted_kind}/{name}` and the deletion dates.
pub(crate) fn with_deletion(
    shared: &Shared,
    name: &str,
    deleted: Option<Deletion>,
    deleted_kind: &str,
    mut value: Value,
) -> Value {
    if let Value::Object(m) = &mut value {
        let url = &shared.settings.vault_url;
        let id = format!("{url}/{deleted_kind}/{name}");
        m.insert("recoveryId".into(), id.into());
        if let Some(d) = deleted {
            m.insert("deletedDate".into(), d.deleted_date.into());
            m.insert("scheduledPurgeDate".into(), d.scheduled_purge_date.into());
        }
    }
    value
}
