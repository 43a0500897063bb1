//! A Key Vault key's public JWK as an SPKI `PUBLIC KEY` PEM, the way the
//! provider writes it (Go's `x509.MarshalPKIXPublicKey`): RSA from `n`, `e`;
//! EC from `crv`, `x`, `y` on P-256, P-384 and P-521. Symmetric keys and
//! secp256k1 are refused: they have no such form the provider writes.

use base64::Engine;
use der::asn1::{AnyRef, BitStringRef, ObjectIdentifier, UintRef};
use der::Encode;
use pkcs1::RsaPublicKey;
use spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfo};

use super::privkey::{EC_PUBLIC_KEY, P256, P384, P521, RSA_ENCRYPTION};
use super::{pem_public, ObjectError};

/// The public members of a JWK, base64url-decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublicJwk {
    pub kid: Option<String>,
    pub kty: String,
    pub key_ops: Vec<String>,
    pub crv: Option<String>,
    pub n: Option<Vec<u8>>,
    pub e: Option<Vec<u8>>,
    pub x: Option<Vec<u8>>,
    pub y: Option<Vec<u8>>,
}

/// Largest RSA modulus accepted: Key Vault's largest is 4096 bits; past
/// this a JWK is refused rather than encoded.
pub const MAX_RSA_BITS: usize = 16384;
/// Longest RSA public exponent accepted (65537 takes 3 bytes).
pub const MAX_RSA_EXPONENT_BYTES: usize = 8;

fn unsupported(what: String) -> ObjectError {
    ObjectError::UnsupportedKey(what)
}

fn missing(member: &str) -> ObjectError {
    ObjectError::UnsupportedKey(format!("the key's JWK has no {member:?}"))
}

/// The SPKI DER of a public JWK.
pub fn spki_der(jwk: &PublicJwk) -> Result<Vec<u8>, ObjectError> {
    let enc = |e: der::Error| ObjectError::UnsupportedKey(format!("cannot encode the key: {e}"));
    match jwk.kty.as_str() {
        "RSA" | "RSA-HSM" => {
            let n = jwk.n.as_deref().ok_or_else(|| missing("n"))?;
            let e = jwk.e.as_deref().ok_or_else(|| missing("e"))?;
            let significant = |b: &[u8]| b.iter().skip_while(|x| **x == 0).count();
            if significant(n) * 8 > MAX_RSA_BITS {
                return Err(ObjectError::Refused(format!(
                    "the key's RSA modulus is longer than {MAX_RSA_BITS} bits"
                )));
            }
            if significant(e) > MAX_RSA_EXPONENT_BYTES {
                return Err(ObjectError::Refused(format!(
                    "the key's RSA exponent is longer than {MAX_RSA_EXPONENT_BYTES} bytes"
                )));
            }
            let key = RsaPublicKey {
                modulus: UintRef::new(n).map_err(enc)?,
                public_exponent: UintRef::new(e).map_err(enc)?,
            };
            let inner = key.to_der().map_err(enc)?;
            spki(RSA_ENCRYPTION, AnyRef::NULL, &inner).map_err(enc)
        }
        "EC" | "EC-HSM" => {
            let crv = jwk.crv.as_deref().ok_or_else(|| missing("crv"))?;
            let (oid, size) = match crv {
                "P-256" => (P256, 32),
                "P-384" => (P384, 48),
                "P-521" => (P521, 66),
                other => {
                    return Err(unsupported(format!(
                        "the EC curve {other} has no PEM public key form here (only P-256, P-384 and P-521)"
                    )))
                }
            };
            let x = jwk.x.as_deref().ok_or_else(|| missing("x"))?;
            let y = jwk.y.as_deref().ok_or_else(|| missing("y"))?;
            if x.len() > size || y.len() > size {
                return Err(unsupported(format!("the key's {crv} coordinates are too long")));
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(4);
            for c in [x, y] {
                point.extend(std::iter::repeat_n(0u8, size - c.len()));
                point.extend_from_slice(c);
            }
            let valid = match crv {
                "P-256" => p256::PublicKey::from_sec1_bytes(&point).is_ok(),
                "P-384" => p384::PublicKey::from_sec1_bytes(&point).is_ok(),
                _ => p521::PublicKey::from_sec1_bytes(&point).is_ok(),
            };
            if !valid {
                return Err(unsupported(format!("the key's point is not on {crv}")));
            }
            spki(EC_PUBLIC_KEY, AnyRef::from(&oid), &point).map_err(enc)
        }
        other => Err(unsupported(format!(
            "the key type {other} has no PEM public key form (only RSA and EC keys do; symmetric keys never leave the vault)"
        ))),
    }
}

fn spki(oid: ObjectIdentifier, params: AnyRef<'_>, key: &[u8]) -> der::Result<Vec<u8>> {
    SubjectPublicKeyInfo {
        algorithm: AlgorithmIdentifierRef {
            oid,
            parameters: Some(params),
        },
        subject_public_key: BitStringRef::from_bytes(key)?,
    }
    .to_der()
}

/// `PUBLIC KEY` PEM of a public JWK.
pub fn to_pem(jwk: &PublicJwk) -> Result<Vec<u8>, ObjectError> {
    pem_public("PUBLIC KEY", &spki_der(jwk)?)
}

/// The public JWK as JSON (base64url members, one line, newline-terminated).
pub fn to_json(jwk: &PublicJwk) -> Vec<u8> {
    let b64 = |v: &Option<Vec<u8>>| {
        v.as_ref()
            .map(|b| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
    };
    let mut map = serde_json::Map::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            map.insert(k.into(), serde_json::Value::String(v));
        }
    };
    put("kid", jwk.kid.clone());
    put("kty", Some(jwk.kty.clone()));
    put("crv", jwk.crv.clone());
    put("n", b64(&jwk.n));
    put("e", b64(&jwk.e));
    put("x", b64(&jwk.x));
    put("y", b64(&jwk.y));
    if !jwk.key_ops.is_empty() {
        map.insert(
            "key_ops".into(),
            serde_json::Value::Array(
                jwk.key_ops
                    .iter()
                    .map(|o| serde_json::Value::String(o.clone()))
                    .collect(),
            ),
        );
    }
    let mut out = serde_json::Value::Object(map).to_string().into_bytes();
    out.push(b'\n');
    out
}
