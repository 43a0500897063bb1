//! The bytes of a secret view, derived from one version's value: a PKCS#12
//! certificate secret as PEM (unless `format = pfx`), then the stored
//! encoding decoded, then one JSON field picked. Pure; every buffer that
//! holds derived bytes is zeroizing, and no message quotes the value.

use base64::Engine;
use zeroize::Zeroizing;

use crate::config::{Encoding, ViewObject, ViewSpec};
use crate::error::ViewBytesError;
use crate::objects::{bundle, PKCS12};

/// Derives a secret view's file from a version's value and content type.
/// The error says what did not fit, never what the value holds.
pub(super) fn derive(
    spec: &ViewSpec,
    value: &[u8],
    content_type: Option<&str>,
) -> Result<Zeroizing<Vec<u8>>, ViewBytesError> {
    let pem = matches!(spec.object, ViewObject::Secret { pem: true });
    let mut bytes = if pem && content_type == Some(PKCS12) {
        // The provider's `objectFormat: pem` of a certificate's secret:
        // the private key, then the chain leaf first.
        let parts =
            bundle::from_secret(value, content_type).map_err(ViewBytesError::Certificate)?;
        parts.tls_pem.clone()
        // `parts` drops here and wipes its key material.
    } else {
        match spec.encoding {
            Encoding::Utf8 => Zeroizing::new(value.to_vec()),
            Encoding::Base64 => decode_base64(value)?,
            Encoding::Hex => decode_hex(value)?,
        }
    };
    if let Some(ptr) = &spec.json_pointer {
        bytes = pick(&bytes, ptr)?;
    }
    Ok(bytes)
}

/// Standard base64, padded; line breaks are ignored as the provider's
/// decoder ignores them.
fn decode_base64(value: &[u8]) -> Result<Zeroizing<Vec<u8>>, ViewBytesError> {
    let clean: Zeroizing<Vec<u8>> = Zeroizing::new(
        value
            .iter()
            .copied()
            .filter(|b| *b != b'\r' && *b != b'\n')
            .collect(),
    );
    let mut out = Zeroizing::new(Vec::with_capacity(clean.len() / 4 * 3 + 3));
    base64::engine::general_purpose::STANDARD
        .decode_vec(&clean[..], &mut out)
        .map_err(|_| ViewBytesError::NotBase64)?;
    Ok(out)
}

/// Hex digits, either case, an even number of them.
fn decode_hex(value: &[u8]) -> Result<Zeroizing<Vec<u8>>, ViewBytesError> {
    if !value.len().is_multiple_of(2) {
        return Err(ViewBytesError::NotHex);
    }
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Zeroizing::new(Vec::with_capacity(value.len() / 2));
    for pair in value.chunks_exact(2) {
        match (digit(pair[0]), digit(pair[1])) {
            (Some(h), Some(l)) => out.push(h << 4 | l),
            _ => return Err(ViewBytesError::NotHex),
        }
    }
    Ok(out)
}

/// The field at `ptr`: a string as its raw text, anything else as compact
/// JSON. The parsed document's heap copies are wiped when freed (see
/// `crate::locked`).
fn pick(doc: &[u8], ptr: &str) -> Result<Zeroizing<Vec<u8>>, ViewBytesError> {
    let pointer = || ptr.to_string();
    let value: serde_json::Value =
        serde_json::from_slice(doc).map_err(|e| ViewBytesError::NotJson {
            line: e.line(),
            column: e.column(),
            pointer: pointer(),
        })?;
    match value.pointer(ptr) {
        None => Err(ViewBytesError::NoField { pointer: pointer() }),
        Some(serde_json::Value::String(s)) => Ok(Zeroizing::new(s.clone().into_bytes())),
        Some(other) => serde_json::to_vec(other)
            .map(Zeroizing::new)
            .map_err(|_| ViewBytesError::Unwritable { pointer: pointer() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::views::{validate_views, RawView};

    fn spec(f: impl FnOnce(&mut RawView)) -> ViewSpec {
        let mut r = RawView {
            path: Some("p".into()),
            name: Some("s".into()),
            ..Default::default()
        };
        f(&mut r);
        validate_views(vec![r], "https://v.vault.azure.net")
            .unwrap()
            .remove(0)
    }

    #[test]
    fn encodings_decode_to_raw_bytes() {
        let b64 = spec(|r| r.encoding = Some("base64".into()));
        assert_eq!(
            &derive(&b64, b"AAEC/w==\n", None).unwrap()[..],
            &[0, 1, 2, 255]
        );
        let e = derive(&b64, b"not base64!", None).unwrap_err();
        assert!(matches!(e, ViewBytesError::NotBase64), "{e}");
        assert!(!e.to_string().contains("not base64!"), "{e}");
        let hex = spec(|r| r.encoding = Some("hex".into()));
        assert_eq!(&derive(&hex, b"00ff7A", None).unwrap()[..], &[0, 255, 0x7a]);
        for bad in [&b"0g"[..], b"123"] {
            let e = derive(&hex, bad, None).unwrap_err();
            assert!(matches!(e, ViewBytesError::NotHex), "{e}");
        }
        let plain = spec(|_| {});
        assert_eq!(&derive(&plain, b"as is", None).unwrap()[..], b"as is");
    }

    #[test]
    fn json_pointers_pick_strings_raw_and_others_compact() {
        let doc = br#"{"db": {"user": "app", "port": 5432, "tags": ["a", "b"]}, "a/b": "slash"}"#;
        let at = |p: &str| derive(&spec(|r| r.json_pointer = Some(p.into())), doc, None);
        assert_eq!(&at("/db/user").unwrap()[..], b"app");
        assert_eq!(&at("/db/port").unwrap()[..], b"5432");
        assert_eq!(&at("/db/tags").unwrap()[..], br#"["a","b"]"#);
        assert_eq!(&at("/db/tags/1").unwrap()[..], b"b");
        assert_eq!(&at("/a~1b").unwrap()[..], b"slash");
        let miss = at("/db/password").unwrap_err();
        assert!(
            matches!(&miss, ViewBytesError::NoField { pointer } if pointer == "/db/password"),
            "{miss}"
        );
        assert!(!miss.to_string().contains("app"), "{miss}");
        let not_json = derive(
            &spec(|r| r.json_pointer = Some("/x".into())),
            b"hunter2",
            None,
        )
        .unwrap_err();
        assert!(
            matches!(&not_json, ViewBytesError::NotJson { line: 1, .. }),
            "{not_json}"
        );
        assert!(!not_json.to_string().contains("hunter2"), "{not_json}");
        // Decoded first, then picked.
        let both = spec(|r| {
            r.encoding = Some("base64".into());
            r.json_pointer = Some("/k".into());
        });
        assert_eq!(&derive(&both, b"eyJrIjoidiJ9", None).unwrap()[..], b"v");
    }
}
