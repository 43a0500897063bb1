//! Secret metadata as extended attributes (`user.akv.*`). Values are plain
//! text; times are RFC 3339 in UTC.

use crate::secret::SecretProps;

const PREFIX: &str = "user.akv.";
const TAG_PREFIX: &str = "user.akv.tag.";

fn rfc3339(secs: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(secs).ok()?;
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// Fixed attributes in listing order, with their values when present.
fn fixed(props: &SecretProps) -> [(&'static str, Option<String>); 7] {
    [
        ("version", Some(props.version.to_string())),
        ("id", Some(props.id.clone())),
        ("content_type", props.content_type.clone()),
        ("created", props.created.and_then(rfc3339)),
        ("updated", props.updated.and_then(rfc3339)),
        ("expires", props.expires.and_then(rfc3339)),
        ("not_before", props.not_before.and_then(rfc3339)),
    ]
}

/// Names present on a secret file: attributes with no value are not listed.
pub fn names(props: &SecretProps) -> Vec<String> {
    let mut out: Vec<String> = fixed(props)
        .into_iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| format!("{PREFIX}{k}"))
        .collect();
    out.extend(
        props
            .tags
            .keys()
            .map(|k| format!("{TAG_PREFIX}{k}"))
            .filter(|n| listable(n)),
    );
    out
}

/// The kernel refuses to get an attribute whose name is longer than
/// XATTR_NAME_MAX (255 bytes), a NUL would split the listing's wire form,
/// and other control characters (a newline) would forge lines in the
/// output of tools such as getfattr: such tags (Key Vault allows tag names
/// up to 512 characters of nearly any kind) are left out of the listing
/// rather than listed unreadable or misleading. Their values stay
/// unreachable through the file; the vault still has them.
fn listable(name: &str) -> bool {
    name.len() <= 255 && !name.chars().any(char::is_control)
}

pub fn value(props: &SecretProps, name: &str) -> Option<Vec<u8>> {
    if let Some(tag) = name.strip_prefix(TAG_PREFIX) {
        return props.tags.get(tag).map(|v| v.as_bytes().to_vec());
    }
    let key = name.strip_prefix(PREFIX)?;
    fixed(props)
        .into_iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v)
        .map(String::into_bytes)
}

pub fn root_names() -> Vec<String> {
    vec![format!("{PREFIX}vault")]
}

pub fn root_value(vault_url: &str, name: &str) -> Option<Vec<u8>> {
    (name == "user.akv.vault").then(|| vault_url.as_bytes().to_vec())
}

/// The listxattr wire form: each name followed by a NUL.
pub fn join(names: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for n in names {
        out.extend_from_slice(n.as_bytes());
        out.push(0);
    }
    out
}

/// Attributes of a certificate's files and directory, from its leaf.
pub fn cert_fields(leaf: &crate::objects::LeafInfo) -> [(&'static str, Option<String>); 4] {
    [
        ("x5t", Some(leaf.x5t.clone())),
        ("not_after", rfc3339(leaf.not_after)),
        ("subject", Some(leaf.subject.clone())),
        ("issuer", Some(leaf.issuer.clone())),
    ]
}

/// The full attribute name of a certificate field.
pub fn prefixed(key: &str) -> String {
    format!("{PREFIX}{key}")
}
