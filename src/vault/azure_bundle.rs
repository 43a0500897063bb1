//! The GET secret body, parsed so the value goes straight into a zeroizing buffer and errors never quote input.

use std::collections::BTreeMap;

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::secret::{unescape_json_string, SecretName, SecretProps, VersionId};
use crate::vault::VaultError;

/// A SecretBundle as akvfs uses it: the version's properties, and the value
/// in a zeroizing buffer.
pub struct ParsedBundle {
    pub value: Zeroizing<Vec<u8>>,
    /// `served_at` is left for the caller, which has the response's headers.
    pub props: SecretProps,
}

impl std::fmt::Debug for ParsedBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParsedBundle")
            .field(
                "value",
                &format_args!("[REDACTED; {} bytes]", self.value.len()),
            )
            .field("id", &self.props.id)
            .finish_non_exhaustive()
    }
}

/// Parses a GET secret body answering for `name`. The value is taken as raw
/// JSON text borrowed from `body` and unescaped straight into a zeroizing
/// buffer: serde_json would unescape it through its scratch buffer and free
/// that unwiped. Errors name the kind of failure only, never input text.
///
/// Key Vault matches names case-insensitively; file names are exact, so a
/// body for `DB-PASSWORD` does not answer `db-password`: that is
/// [`VaultError::NotFound`].
pub fn parse_secret_bundle(body: &[u8], name: &SecretName) -> Result<ParsedBundle, VaultError> {
    let bundle: Bundle<'_> = serde_json::from_slice(body).map_err(|e| {
        VaultError::BadResponse(format!(
            "secret body is not a SecretBundle: {}",
            e.classify_str()
        ))
    })?;
    let raw = bundle
        .value
        .ok_or_else(|| VaultError::BadResponse("secret body has no value".into()))?;
    let value = unescape_json_string(raw.get())
        .ok_or_else(|| VaultError::BadResponse("secret value is not a JSON string".into()))?;
    let id = bundle.id.unwrap_or_default();
    let served_name = id
        .split("/secrets/")
        .nth(1)
        .and_then(|r| r.split('/').next());
    if served_name != Some(name.as_str()) {
        return Err(VaultError::NotFound);
    }
    let version = id
        .rsplit('/')
        .next()
        .filter(|v| !v.is_empty())
        .map(VersionId::new)
        .ok_or_else(|| VaultError::BadResponse("secret id carries no version".into()))?;
    Ok(ParsedBundle {
        value,
        props: SecretProps {
            name: name.clone(),
            version,
            id,
            content_type: bundle.content_type,
            enabled: bundle.attributes.enabled.unwrap_or(true),
            created: bundle.attributes.created,
            updated: bundle.attributes.updated,
            expires: bundle.attributes.exp,
            not_before: bundle.attributes.nbf,
            tags: bundle.tags.unwrap_or_default(),
            served_at: None,
        },
    })
}

/// The SecretBundle fields we use. Parsed here rather than through the SDK
/// model so the value lands straight in a zeroizing buffer.
#[derive(Deserialize)]
struct Bundle<'a> {
    #[serde(borrow)]
    value: Option<&'a serde_json::value::RawValue>,
    id: Option<String>,
    #[serde(rename = "contentType")]
    content_type: Option<String>,
    #[serde(default)]
    attributes: Attributes,
    #[serde(default)]
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
struct Attributes {
    enabled: Option<bool>,
    created: Option<i64>,
    updated: Option<i64>,
    exp: Option<i64>,
    nbf: Option<i64>,
}

trait ClassifyStr {
    fn classify_str(&self) -> &'static str;
}

impl ClassifyStr for serde_json::Error {
    // serde_json's message can quote input; name only the kind of failure.
    fn classify_str(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "invalid JSON",
            serde_json::error::Category::Data => "unexpected JSON shape",
            serde_json::error::Category::Eof => "truncated JSON",
        }
    }
}
