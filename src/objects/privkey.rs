//! Private keys: PKCS#8 as Go's `x509.MarshalPKCS8PrivateKey` writes it
//! (what the provider puts first in its PEM), and the PKCS#1 / SEC1 form a
//! Kubernetes TLS secret's `tls.key` holds.

use der::asn1::{AnyRef, BitStringRef, ObjectIdentifier, OctetStringRef, UintRef};
use der::Decode;
use pkcs1::RsaPrivateKey;
use pkcs8::{AlgorithmIdentifierRef, PrivateKeyInfo};
use sec1::EcPrivateKey;
use zeroize::Zeroizing;

use super::{der_zeroizing, ObjectError};

pub(crate) const RSA_ENCRYPTION: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
pub(crate) const EC_PUBLIC_KEY: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
pub(crate) const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
pub(crate) const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
pub(crate) const P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");

/// One private key in its two encodings. Both buffers are wiped on drop.
pub struct PrivateKey {
    /// PKCS#8 `PrivateKeyInfo` DER (`PRIVATE KEY`).
    pub pkcs8: Zeroizing<Vec<u8>>,
    /// PKCS#1 `RSAPrivateKey` or SEC1 `ECPrivateKey` DER.
    pub traditional: Zeroizing<Vec<u8>>,
    /// `RSA PRIVATE KEY` or `EC PRIVATE KEY`.
    pub traditional_label: &'static str,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({}, [REDACTED])", self.traditional_label)
    }
}

fn bad(e: impl std::fmt::Display) -> ObjectError {
    ObjectError::PrivateKey(e.to_string())
}

/// Reads a PEM block's DER by its label.
pub fn from_pem_block(label: &str, der: &[u8]) -> Result<PrivateKey, ObjectError> {
    match label {
        "PRIVATE KEY" => from_pkcs8(der),
        "RSA PRIVATE KEY" => rsa(der),
        "EC PRIVATE KEY" => {
            let key = EcPrivateKey::from_der(der).map_err(bad)?;
            let curve = key
                .parameters
                .and_then(|p| p.named_curve())
                .ok_or_else(|| bad("an EC PRIVATE KEY without a named curve"))?;
            ec(curve, key.private_key)
        }
        other => Err(bad(format!(
            "a PEM block labelled {other:?} is not a private key"
        ))),
    }
}

/// Reads a PKCS#8 `PrivateKeyInfo` (RSA or EC on P-256, P-384, P-521).
pub fn from_pkcs8(der: &[u8]) -> Result<PrivateKey, ObjectError> {
    let info = pkcs8::PrivateKeyInfoRef::from_der(der).map_err(bad)?;
    let inner = info.private_key.as_bytes();
    if info.algorithm.oid == RSA_ENCRYPTION {
        return rsa(inner);
    }
    if info.algorithm.oid != EC_PUBLIC_KEY {
        return Err(ObjectError::UnsupportedKey(format!(
            "the private key's algorithm {} is not RSA or EC",
            info.algorithm.oid
        )));
    }
    let key = EcPrivateKey::from_der(inner).map_err(bad)?;
    let curve = match info.algorithm.parameters {
        Some(p) => p.decode_as::<ObjectIdentifier>().map_err(bad)?,
        None => key
            .parameters
            .and_then(|p| p.named_curve())
            .ok_or_else(|| bad("an EC key without a named curve"))?,
    };
    ec(curve, key.private_key)
}

fn rsa(pkcs1_der: &[u8]) -> Result<PrivateKey, ObjectError> {
    let key = RsaPrivateKey::<UintRef<'_>>::from_der(pkcs1_der).map_err(bad)?;
    let traditional = der_zeroizing(&key).map_err(bad)?;
    let pkcs8 = wrap_pkcs8(RSA_ENCRYPTION, AnyRef::NULL, &traditional)?;
    Ok(PrivateKey {
        pkcs8,
        traditional,
        traditional_label: "RSA PRIVATE KEY",
    })
}

/// Re-encodes an EC key from its scalar: the private key padded to the
/// curve's size and the uncompressed public point, as Go and OpenSSL write
/// it (the public point is computed, so a key stored without one gets it).
fn ec(curve: ObjectIdentifier, scalar: &[u8]) -> Result<PrivateKey, ObjectError> {
    macro_rules! parts {
        ($c:ident) => {{
            let sk = $c::SecretKey::from_slice(scalar).map_err(|_| bad("invalid EC scalar"))?;
            let private = Zeroizing::new(sk.to_bytes().to_vec());
            let public = sk.public_key().to_sec1_bytes();
            let sec1 = sk.to_sec1_der().map_err(bad)?;
            (private, public, sec1)
        }};
    }
    let (private, public, traditional) = match curve {
        c if c == P256 => parts!(p256),
        c if c == P384 => parts!(p384),
        c if c == P521 => parts!(p521),
        other => {
            return Err(ObjectError::UnsupportedKey(format!(
                "the EC curve {other} is not supported (only P-256, P-384 and P-521)"
            )))
        }
    };
    let inner = EcPrivateKey {
        private_key: &private,
        parameters: None,
        public_key: Some(&public),
    };
    let inner = der_zeroizing(&inner).map_err(bad)?;
    let pkcs8 = wrap_pkcs8(EC_PUBLIC_KEY, AnyRef::from(&curve), &inner)?;
    Ok(PrivateKey {
        pkcs8,
        traditional,
        traditional_label: "EC PRIVATE KEY",
    })
}

fn wrap_pkcs8(
    oid: ObjectIdentifier,
    parameters: AnyRef<'_>,
    inner: &[u8],
) -> Result<Zeroizing<Vec<u8>>, ObjectError> {
    let info: PrivateKeyInfo<AnyRef<'_>, &OctetStringRef, BitStringRef<'_>> = PrivateKeyInfo {
        algorithm: AlgorithmIdentifierRef {
            oid,
            parameters: Some(parameters),
        },
        private_key: OctetStringRef::new(inner).map_err(bad)?,
        public_key: None,
    };
    der_zeroizing(&info).map_err(bad)
}
