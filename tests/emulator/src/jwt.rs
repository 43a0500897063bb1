//! HS256 JSON Web Tokens: signing and verifying the emulator's own tokens.
//!
//! HS256 JSON Web Tokens: the emulator signs and verifies its own access tokens and federated
//! (service account) tokens, each kind with its own key, so a token of one kind is never accepted
//! as the other and a token edited or signed by anyone else fails verification.

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

/// A signing key for one kind of token.
#[derive(Clone)]
pub(crate) struct SigningKey {
    key: hmac::Key,
    kid: String,
}

/// Why a token was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JwtError {
    /// Not three base64url parts holding JSON objects, or an algorithm other than HS256.
    Malformed,
    /// Well formed, but the signature is not ours.
    BadSignature,
}

impl SigningKey {
    /// A fresh random key; `kid` names it in the token header.
    pub(crate) fn generate(kid: &str) -> Self {
        let mut bytes = [0u8; 32];
        crate::util::random_bytes(&mut bytes);
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
            kid: kid.to_string(),
        }
    }

    /// Signs `claims` (a JSON object) into a compact JWT.
    pub(crate) fn sign(&self, claims: &Map<String, Value>) -> String {
        let header = serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": self.kid});
        let header = URL_SAFE_NO_PAD.encode(header.to_string());
        let payload = URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string());
        let signing_input = format!("{header}.{payload}");
        let tag = hmac::sign(&self.key, signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// Verifies the signature of a compact JWT and returns its claims.
    pub(crate) fn verify(&self, token: &str) -> Result<Map<String, Value>, JwtError> {
        let (header, claims, signing_input, signature) = split(token)?;
        if header.get("alg").and_then(Value::as_str) != Some("HS256") {
            return Err(JwtError::BadSignature);
        }
        hmac::verify(&self.key, signing_input.as_bytes(), &signature)
            .map_err(|_| JwtError::BadSignature)?;
        Ok(claims)
    }
}

type Parts<'a> = (Map<String, Value>, Map<String, Value>, &'a str, Vec<u8>);

/// Splits a compact JWT into header, claims, signing input and raw signature, without verifying.
fn split(token: &str) -> Result<Parts<'_>, JwtError> {
    let token = token.trim();
    let mut parts = token.splitn(3, '.');
    let (Some(h), Some(p), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed);
    };
    if s.contains('.') {
        return Err(JwtError::Malformed);
    }
    let header = decode_object(h)?;
    let claims = decode_object(p)?;
    let signature = URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| JwtError::Malformed)?;
    let signing_input = &token[..h.len() + 1 + p.len()];
    Ok((header, claims, signing_input, signature))
}

fn decode_object(part: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| JwtError::Malformed)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwtError::Malformed),
    }
}

/// An integer claim (seconds), accepting JSON integers and floats.
pub(crate) fn int_claim(claims: &Map<String, Value>, name: &str) -> Option<i64> {
    match claims.get(name)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        _ => None,
    }
}

/// A string claim.
pub(crate) fn str_claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("sub".into(), Value::from("me"));
        m.insert("exp".into(), Value::from(10));
        m
    }

    #[test]
    fn round_trip() {
        let key = SigningKey::generate("k");
        let token = key.sign(&claims());
        let back = key.verify(&token).expect("valid");
        assert_eq!(str_claim(&back, "sub"), Some("me"));
        assert_eq!(int_claim(&back, "exp"), Some(10));
    }

    #[test]
    fn other_key_or_edited_payload_fails() {
        let key = SigningKey::generate("k");
        let other = SigningKey::generate("k");
        let token = key.sign(&claims());
        assert_eq!(other.verify(&token), Err(JwtError::BadSignature));
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(r#"{"sub":"admin","exp":10}"#);
        parts[1] = &forged;
        assert_eq!(key.verify(&parts.join(".")), Err(JwtError::BadSignature));
    }

    #[test]
    fn garbage_is_malformed() {
        let key = SigningKey::generate("k");
        for bad in [
            "",
            "a",
            "a.b",
            "a.b.c",
            "...",
            "x.y.z.w",
            "\u{0}.\u{1}.\u{2}",
        ] {
            assert_eq!(key.verify(bad), Err(JwtError::Malformed), "{bad:?}");
        }
    }
}
