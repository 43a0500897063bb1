//! A secret, its versions and soft deletion, and the changes a writer asks for.

use std::collections::BTreeMap;

/// One version of a secret.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    /// 32 lowercase hex digits.
    pub id: String,
    /// The value.
    pub value: String,
    /// `contentType`.
    pub content_type: Option<String>,
    /// Tags (None: the secret has no `tags` member).
    pub tags: Option<BTreeMap<String, String>>,
    /// `attributes.enabled`.
    pub enabled: bool,
    /// `attributes.nbf`.
    pub nbf: Option<i64>,
    /// `attributes.exp`.
    pub exp: Option<i64>,
    /// `attributes.created`.
    pub created: i64,
    /// `attributes.updated`.
    pub updated: i64,
    /// The secret backs a certificate (`managed: true`, `kid` = the certificate's key version).
    pub managed: bool,
}

/// When a secret was soft-deleted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Deletion {
    /// `deletedDate`.
    pub deleted_date: i64,
    /// `scheduledPurgeDate`.
    pub scheduled_purge_date: i64,
}

/// A secret: its name (original case) and versions, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Secret {
    /// Name as first created.
    pub name: String,
    /// Versions, oldest first; the last is the latest.
    pub versions: Vec<Version>,
    /// Set while soft-deleted.
    pub deleted: Option<Deletion>,
}

impl Secret {
    /// The latest version.
    pub fn latest(&self) -> Option<&Version> {
        self.versions.last()
    }

    /// The version `id` (case-insensitive).
    pub(crate) fn version(&self, id: &str) -> Option<&Version> {
        self.versions.iter().find(|v| v.id.eq_ignore_ascii_case(id))
    }
}

/// A new version to store.
#[derive(Debug, Clone, Default)]
pub(crate) struct NewVersion {
    pub value: String,
    pub version: Option<String>,
    pub content_type: Option<String>,
    pub tags: Option<BTreeMap<String, String>>,
    pub enabled: Option<bool>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub created: Option<i64>,
}

/// Attribute changes (PATCH): only `Some` fields change.
#[derive(Debug, Clone, Default)]
pub(crate) struct AttributeUpdate {
    pub content_type: Option<String>,
    pub tags: Option<BTreeMap<String, String>>,
    pub enabled: Option<bool>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
}
