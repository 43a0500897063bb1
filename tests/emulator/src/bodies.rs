//! Request bodies of the data plane: JSON object, properties, tags and attributes, checked.

use crate::http::{read_body, BodyError};
use crate::props::Props;
use crate::secret::{AttributeUpdate, NewVersion};
use crate::vault_error::VaultError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hyper::body::Incoming;
use serde_json::Value;
use std::collections::BTreeMap;

/// The request body as a JSON object (400 for anything else or a body too large).
pub(crate) async fn read_json(body: Incoming) -> Result<Value, VaultError> {
    let bytes = read_body(body, crate::http::MAX_BODY_BYTES)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => VaultError::bad_parameter(format!(
                "The request body is larger than {} bytes.",
                crate::http::MAX_BODY_BYTES
            )),
            BodyError::Io => VaultError::bad_parameter("The request body could not be read."),
        })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(VaultError::bad_parameter(
            "Bad JSON content found in the request.",
        )),
    }
}

/// A set body: `value` and the properties of the new version.
pub(crate) fn parse_set(body: &Value) -> Result<NewVersion, VaultError> {
    let value = match body.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => {
            return Err(VaultError::bad_parameter(
                "Property 'value' is required and must be a string.",
            ))
        }
        Some(_) => {
            return Err(VaultError::bad_parameter(
                "Property 'value' has invalid value: it must be a string.",
            ))
        }
    };
    Ok(parse_props(body)?.new_version(value, None, None))
}

/// An update body: the properties to change.
pub(crate) fn parse_update(body: &Value) -> Result<AttributeUpdate, VaultError> {
    parse_props(body).map(AttributeUpdate::from)
}

/// `contentType`, `tags` and the settable attributes of a set or update body.
fn parse_props(body: &Value) -> Result<Props, VaultError> {
    let attrs = parse_attributes(body)?;
    Ok(Props {
        content_type: parse_content_type(body)?,
        tags: parse_tags(body)?,
        enabled: attrs.enabled,
        nbf: attrs.nbf,
        exp: attrs.exp,
    })
}

fn parse_content_type(body: &Value) -> Result<Option<String>, VaultError> {
    match body.get("contentType") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= 255 => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(VaultError::bad_parameter(
            "Property 'contentType' is longer than 255 characters.",
        )),
        Some(_) => Err(VaultError::bad_parameter(
            "Property 'contentType' has invalid value: it must be a string.",
        )),
    }
}

/// `tags`: an object of strings, or absent.
pub(crate) fn parse_tags(body: &Value) -> Result<Option<BTreeMap<String, String>>, VaultError> {
    match body.get("tags") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => {
            let mut tags = BTreeMap::new();
            for (k, v) in map {
                match v {
                    Value::String(s) => {
                        tags.insert(k.clone(), s.clone());
                    }
                    _ => {
                        return Err(VaultError::bad_parameter(format!(
                            "Tag '{k}' has invalid value: tag values must be strings."
                        )))
                    }
                }
            }
            Ok(Some(tags))
        }
        Some(_) => Err(VaultError::bad_parameter(
            "Property 'tags' has invalid value: it must be an object.",
        )),
    }
}

/// The settable `attributes` of a body; each absent one is `None`.
#[derive(Default)]
pub(crate) struct ParsedAttributes {
    pub enabled: Option<bool>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
}

/// `attributes`: `enabled` (a boolean), `nbf` and `exp` (Unix seconds), each optional.
pub(crate) fn parse_attributes(body: &Value) -> Result<ParsedAttributes, VaultError> {
    let attrs = match body.get("attributes") {
        None | Some(Value::Null) => return Ok(ParsedAttributes::default()),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(VaultError::bad_parameter(
                "Property 'attributes' has invalid value: it must be an object.",
            ))
        }
    };
    let enabled = match attrs.get("enabled") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            return Err(VaultError::bad_parameter(
                "Property 'attributes.enabled' has invalid value: it must be true or false.",
            ))
        }
    };
    let time = |key: &str| -> Result<Option<i64>, VaultError> {
        match attrs.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
                .map(Some)
                .ok_or_else(|| {
                    VaultError::bad_parameter(format!(
                        "Property 'attributes.{key}' has invalid value."
                    ))
                }),
            Some(_) => Err(VaultError::bad_parameter(format!(
                "Property 'attributes.{key}' has invalid value: it must be Unix seconds."
            ))),
        }
    };
    Ok(ParsedAttributes {
        enabled,
        nbf: time("nbf")?,
        exp: time("exp")?,
    })
}

/// A backup blob from base64url (padded or not; the standard alphabet is accepted too).
pub(crate) fn decode_blob(text: &str) -> Option<Vec<u8>> {
    let trimmed = text.trim().trim_end_matches('=');
    URL_SAFE_NO_PAD.decode(trimmed).ok().or_else(|| {
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(trimmed)
            .ok()
    })
}
