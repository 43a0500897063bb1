//! A Secrets Store CSI driver SecretProviderClass read into views: the
//! whole manifest (`spec.parameters.objects` and `keyvaultName`), or just
//! the `objects` string (`array:` of YAML strings, one per object).
//!
//! YAML is read with serde-saphyr: maintained, pure Rust, already built
//! for the Kubernetes client, with limits on alias expansion and nesting
//! so an untrusted file cannot exhaust memory. Each field of an object
//! maps to one [`RawView`] field; a field akvfs does not support is an
//! error naming it.

use std::collections::BTreeMap;
use std::path::Path;

use super::views::RawView;
use super::views_error::ViewSourceError;

/// A YAML scalar that may be written as a number or a string
/// (`objectVersionHistory: 5` or `"5"`).
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum Scalar {
    Int(i64),
    Bool(bool),
    Str(String),
}

impl Scalar {
    fn text(self) -> String {
        match self {
            Scalar::Int(i) => i.to_string(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Str(s) => s,
        }
    }
}

/// The `objects` string's content.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectsBlock {
    array: Vec<String>,
}

/// One object, with the fields the Azure provider documents.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SpcObject {
    object_name: Option<Scalar>,
    object_type: Option<Scalar>,
    object_alias: Option<Scalar>,
    object_version: Option<Scalar>,
    object_version_history: Option<Scalar>,
    object_encoding: Option<Scalar>,
    object_format: Option<Scalar>,
    file_permission: Option<Scalar>,
}

/// The parts of a manifest akvfs reads.
#[derive(Debug, serde::Deserialize)]
struct Manifest {
    kind: Option<String>,
    spec: Option<Spec>,
}

#[derive(Debug, serde::Deserialize)]
struct Spec {
    provider: Option<String>,
    parameters: Option<BTreeMap<String, Scalar>>,
}

/// Parameters about the identity, which akvfs takes from its own
/// authentication settings; accepted and not used.
const IDENTITY_PARAMETERS: [&str; 7] = [
    "clientID",
    "tenantId",
    "cloudName",
    "usePodIdentity",
    "useVMManagedIdentity",
    "userAssignedIdentityID",
    "podName",
];

/// How the parser names an object's field that would pick a vault: the
/// provider has none (the class's `keyvaultName` applies to every object).
const VAULT_FIELDS: [&str; 3] = [
    "unknown field `keyvaultName`",
    "unknown field `vault`",
    "unknown field `vaultName`",
];

fn yaml_err(file: &str, part: Option<String>, e: impl std::fmt::Display) -> ViewSourceError {
    // The parser's message can quote the input; keep its first line only
    // (the location and the reason), never the document.
    let text = e.to_string();
    ViewSourceError::SpcYaml {
        file: file.to_string(),
        part,
        reason: text.lines().next().unwrap_or("").to_string(),
    }
}

/// Parses a SecretProviderClass manifest, or its `objects` string, into
/// views. `label` names the source in messages. The vault comes from the
/// class (`keyvaultName`), never from an object: as for the provider, an
/// object naming a vault is an unknown field.
pub fn parse_spc(text: &str, label: &str) -> Result<Vec<RawView>, ViewSourceError> {
    let is_manifest = text
        .lines()
        .any(|l| l.starts_with("kind:") || l.starts_with("apiVersion:") || l.starts_with("spec:"));
    let (objects, vault) = if is_manifest {
        let m: Manifest = serde_saphyr::from_str(text).map_err(|e| yaml_err(label, None, e))?;
        if let Some(k) = &m.kind {
            if k != "SecretProviderClass" {
                return Err(ViewSourceError::SpcKind {
                    file: label.into(),
                    kind: k.clone(),
                });
            }
        }
        let no_objects = || ViewSourceError::SpcNoObjects { file: label.into() };
        let spec = m.spec.ok_or_else(no_objects)?;
        if let Some(p) = &spec.provider {
            if p != "azure" {
                return Err(ViewSourceError::SpcProvider {
                    file: label.into(),
                    provider: p.clone(),
                });
            }
        }
        let mut params = spec.parameters.unwrap_or_default();
        let objects = params.remove("objects").ok_or_else(no_objects)?.text();
        let vault = params.remove("keyvaultName").map(Scalar::text);
        if let Some(other) = params
            .keys()
            .find(|k| !IDENTITY_PARAMETERS.contains(&k.as_str()))
        {
            return Err(ViewSourceError::SpcParameter {
                file: label.into(),
                parameter: other.clone(),
            });
        }
        (objects, vault)
    } else {
        (text.to_string(), None)
    };
    let block: ObjectsBlock =
        serde_saphyr::from_str(&objects).map_err(|e| yaml_err(label, Some("objects".into()), e))?;
    block
        .array
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let entry = i + 1;
            let o: SpcObject = serde_saphyr::from_str(item).map_err(|e| {
                let text = e.to_string();
                if VAULT_FIELDS.iter().any(|f| text.contains(f)) {
                    return ViewSourceError::SpcObjectVault {
                        file: label.into(),
                        entry,
                    };
                }
                yaml_err(label, Some(format!("objects entry #{entry}")), e)
            })?;
            to_view(o, vault.clone(), label, entry)
        })
        .collect()
}

/// One object as a view, with the provider's meaning of each field.
fn to_view(
    o: SpcObject,
    vault: Option<String>,
    file: &str,
    entry: usize,
) -> Result<RawView, ViewSourceError> {
    let text = |s: Option<Scalar>| s.map(Scalar::text).filter(|s| !s.is_empty());
    let name = text(o.object_name).ok_or_else(|| ViewSourceError::SpcObjectName {
        file: file.into(),
        entry,
    })?;
    let kind = text(o.object_type).ok_or_else(|| ViewSourceError::SpcObjectType {
        file: file.into(),
        entry,
        name: name.clone(),
    })?;
    let history = match text(o.object_version_history) {
        None => None,
        Some(h) => {
            let n: u32 = h.parse().map_err(|_| ViewSourceError::SpcHistory {
                file: file.into(),
                entry,
                name: name.clone(),
                value: h.clone(),
            })?;
            // The provider writes a history directory only for N > 1.
            (n > 1).then_some(n)
        }
    };
    Ok(RawView {
        path: text(o.object_alias).or_else(|| Some(name.clone())),
        name: Some(name),
        kind: Some(kind),
        part: None,
        format: text(o.object_format),
        version: text(o.object_version),
        version_history: history,
        encoding: text(o.object_encoding),
        json_pointer: None,
        mode: text(o.file_permission),
        optional: None,
        vault,
    })
}

/// Reads a SecretProviderClass file (`spc = FILE`).
pub fn load_spc_file(path: &Path) -> Result<Vec<RawView>, ViewSourceError> {
    let text = std::fs::read_to_string(path).map_err(|source| ViewSourceError::SpcRead {
        path: path.to_path_buf(),
        source,
    })?;
    parse_spc(
        &text,
        &format!("SecretProviderClass file {}", path.display()),
    )
}
