//! The properties a writer sets on a secret version, defined once.
//!
//! The properties a writer sets on a secret version (`contentType`, `tags`, `enabled`, `exp`,
//! `nbf`), defined once: [`Props`] is how the store takes them, and [`with_props!`] declares the
//! seed and admin structs that carry them in JSON, with the same serde spelling everywhere.

use std::collections::BTreeMap;

use crate::secret::{AttributeUpdate, NewVersion};

/// The settable properties of a secret version. `None` leaves a property at its default (a new
/// version) or unchanged (an update).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Props {
    pub content_type: Option<String>,
    pub tags: Option<BTreeMap<String, String>>,
    pub enabled: Option<bool>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
}

impl Props {
    /// A new version with these properties.
    pub(crate) fn new_version(
        self,
        value: String,
        version: Option<String>,
        created: Option<i64>,
    ) -> NewVersion {
        NewVersion {
            value,
            version,
            content_type: self.content_type,
            tags: self.tags,
            enabled: self.enabled,
            nbf: self.nbf,
            exp: self.exp,
            created,
        }
    }
}

impl From<Props> for AttributeUpdate {
    fn from(p: Props) -> AttributeUpdate {
        AttributeUpdate {
            content_type: p.content_type,
            tags: p.tags,
            enabled: p.enabled,
            nbf: p.nbf,
            exp: p.exp,
        }
    }
}

/// Declares a struct whose JSON carries the settable properties: the fields given first, then
/// `contentType`, `tags`, `enabled`, `exp` and `nbf` (each optional, left out when unset), then
/// the fields given after `then`. It also gets `props()`, those five as [`Props`].
macro_rules! with_props {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $fty:ty, )*
        }
        $( then { $( $(#[$tmeta:meta])* pub $tfield:ident : $tty:ty, )* } )?
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[$fmeta])* pub $field : $fty, )*
            /// `contentType`.
            #[serde(default, rename = "contentType", skip_serializing_if = "Option::is_none")]
            pub content_type: Option<String>,
            /// Tags.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub tags: Option<::std::collections::BTreeMap<String, String>>,
            /// `attributes.enabled` (a new version defaults to true).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub enabled: Option<bool>,
            /// `attributes.exp`: expiry, Unix seconds.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub exp: Option<i64>,
            /// `attributes.nbf`: not-before, Unix seconds.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub nbf: Option<i64>,
            $( $( $(#[$tmeta])* pub $tfield : $tty, )* )?
        }

        impl $name {
            /// The settable properties, as the store takes them.
            pub(crate) fn props(&self) -> $crate::props::Props {
                $crate::props::Props {
                    content_type: self.content_type.clone(),
                    tags: self.tags.clone(),
                    enabled: self.enabled,
                    nbf: self.nbf,
                    exp: self.exp,
                }
            }
        }
    };
}

pub(crate) use with_props;
