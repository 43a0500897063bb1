//! Certificate and key material: generation, encodings, JWKs and certificate facts.
//!
//! Certificate and key material: key generation, self-signed and CA-signed certificates, PKCS#12
//! and PEM encoding and decoding, public JWKs and certificate facts (`x5t`, validity, subject).
//!
//! rcgen (already the emulator's TLS certificate generator) makes keys and certificates,
//! p12-keystore reads and writes PKCS#12, x509-parser reads certificates and public keys.
//!
//! Also the test chains tests seed: root -> intermediate -> leaf ([`ChainSpec`], [`TestChain`]).

pub use crate::testchain::{ChainSpec, TestChain};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, RsaKeySize, SignatureAlgorithm,
};
use serde_json::{Map, Value};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

/// Key type and size of a generated key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    /// RSA with this many bits (2048, 3072 or 4096).
    Rsa(u32),
    /// EC on this curve: `P-256`, `P-384` or `P-521`.
    Ec(&'static str),
}

impl KeySpec {
    /// From Key Vault's `kty` (`RSA`, `RSA-HSM`, `EC`, `EC-HSM`), `key_size` and `crv`.
    pub fn parse(kty: &str, key_size: Option<u64>, crv: Option<&str>) -> Result<KeySpec, String> {
        match kty.to_ascii_uppercase().as_str() {
            "RSA" | "RSA-HSM" => match key_size.unwrap_or(2048) {
                n @ (2048 | 3072 | 4096) => Ok(KeySpec::Rsa(n as u32)),
                n => Err(format!(
                    "RSA key size {n} is not supported (2048, 3072 or 4096)"
                )),
            },
            "EC" | "EC-HSM" => match crv.unwrap_or("P-256").to_ascii_uppercase().as_str() {
                "P-256" => Ok(KeySpec::Ec("P-256")),
                "P-384" => Ok(KeySpec::Ec("P-384")),
                "P-521" => Ok(KeySpec::Ec("P-521")),
                c => Err(format!(
                    "curve {c} is not supported (P-256, P-384 or P-521)"
                )),
            },
            other => Err(format!("key type {other} is not supported (RSA or EC)")),
        }
    }

    fn algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeySpec::Rsa(_) => &rcgen::PKCS_RSA_SHA256,
            KeySpec::Ec("P-384") => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeySpec::Ec("P-521") => &rcgen::PKCS_ECDSA_P521_SHA512,
            KeySpec::Ec(_) => &rcgen::PKCS_ECDSA_P256_SHA256,
        }
    }

    /// A new random key pair.
    pub fn generate(self) -> Result<KeyPair, String> {
        let kp = match self {
            KeySpec::Rsa(bits) => {
                let size = match bits {
                    3072 => RsaKeySize::_3072,
                    4096 => RsaKeySize::_4096,
                    _ => RsaKeySize::_2048,
                };
                KeyPair::generate_rsa_for(self.algorithm(), size)
            }
            KeySpec::Ec(_) => KeyPair::generate_for(self.algorithm()),
        };
        kp.map_err(|e| format!("key generation failed: {e}"))
    }
}

/// A key pair from PKCS#8 DER (RSA or EC).
pub fn key_from_pkcs8(der: &[u8]) -> Result<KeyPair, String> {
    KeyPair::try_from(der).map_err(|e| format!("the private key is not usable: {e}"))
}

/// Public JWK members (`kty`, `n`,`e` or `crv`,`x`,`y`, base64url) of a SubjectPublicKeyInfo.
pub fn public_jwk(spki_der: &[u8]) -> Result<Map<String, Value>, String> {
    let (_, spki) = SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| format!("the public key is not valid: {e}"))?;
    let mut m = Map::new();
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => {
            m.insert("kty".into(), "RSA".into());
            m.insert("n".into(), b64u(strip_zeros(rsa.modulus)).into());
            m.insert("e".into(), b64u(strip_zeros(rsa.exponent)).into());
        }
        Ok(PublicKey::EC(point)) => {
            let oid = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            let crv = match oid.as_str() {
                "1.2.840.10045.3.1.7" => "P-256",
                "1.3.132.0.34" => "P-384",
                "1.3.132.0.35" => "P-521",
                _ => return Err(format!("EC curve {oid} is not supported")),
            };
            let data = point.data();
            if data.first() != Some(&4) || data.len() % 2 != 1 {
                return Err("the EC point is not uncompressed".into());
            }
            let half = (data.len() - 1) / 2;
            m.insert("kty".into(), "EC".into());
            m.insert("crv".into(), crv.into());
            m.insert("x".into(), b64u(&data[1..1 + half]).into());
            m.insert("y".into(), b64u(&data[1 + half..]).into());
        }
        _ => return Err("only RSA and EC public keys are supported".into()),
    }
    Ok(m)
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|x| *x != 0)
        .unwrap_or(b.len().saturating_sub(1));
    &b[start..]
}

/// base64url without padding.
pub fn b64u(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// SPKI DER of a key pair.
pub fn key_spki(kp: &KeyPair) -> Result<Vec<u8>, String> {
    pem::parse(kp.public_key_pem())
        .map(|p| p.into_contents())
        .map_err(|e| format!("public key: {e}"))
}

/// Facts of a DER certificate.
#[derive(Debug, Clone)]
pub struct CertFacts {
    /// `notBefore`, Unix seconds.
    pub not_before: i64,
    /// `notAfter`, Unix seconds.
    pub not_after: i64,
    /// Subject, RFC 4514 style (`CN=a, O=b`).
    pub subject: String,
    /// SubjectPublicKeyInfo DER.
    pub spki: Vec<u8>,
    /// DNS names among the subject alternative names.
    pub dns_names: Vec<String>,
}

/// Parses a DER certificate.
pub fn cert_facts(der: &[u8]) -> Result<CertFacts, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("the certificate is not valid X.509: {e}"))?;
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                dns_names.push(d.to_string());
            }
        }
    }
    Ok(CertFacts {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        subject: cert.subject().to_string(),
        spki: cert.public_key().raw.to_vec(),
        dns_names,
    })
}

/// `x5t`: base64url SHA-1 of the DER certificate.
pub fn x5t(der: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    b64u(d.as_ref())
}

/// Parameters of a generated certificate.
#[derive(Debug, Clone)]
pub struct CertRequest {
    /// Subject, e.g. `CN=app.example.com, O=Example`.
    pub subject: String,
    /// DNS names for the subject alternative name.
    pub dns_names: Vec<String>,
    /// Validity in months (from now).
    pub validity_months: u32,
    /// A CA certificate (basic constraints CA:TRUE, certSign).
    pub ca: bool,
}

pub(crate) fn params(req: &CertRequest) -> Result<CertificateParams, String> {
    let mut p = CertificateParams::new(req.dns_names.clone())
        .map_err(|e| format!("subject alternative names: {e}"))?;
    let mut dn = rcgen::DistinguishedName::new();
    for part in req.subject.split([',', ';']) {
        let Some((k, v)) = part.trim().split_once('=') else {
            continue;
        };
        let ty = match k.trim().to_ascii_uppercase().as_str() {
            "CN" => DnType::CommonName,
            "O" => DnType::OrganizationName,
            "OU" => DnType::OrganizationalUnitName,
            "C" => DnType::CountryName,
            "L" => DnType::LocalityName,
            "ST" | "S" => DnType::StateOrProvinceName,
            other => return Err(format!("subject attribute {other} is not supported")),
        };
        dn.push(ty, v.trim());
    }
    if dn.iter().next().is_none() {
        return Err(format!(
            "subject {:?} names no attribute (e.g. CN=name)",
            req.subject
        ));
    }
    p.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::minutes(5);
    p.not_after = now + time::Duration::days(i64::from(req.validity_months.max(1)) * 30);
    p.use_authority_key_identifier_extension = true;
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&random_serial()));
    if req.ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
    } else {
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
    }
    Ok(p)
}

fn random_serial() -> Vec<u8> {
    let mut b = [0u8; 16];
    crate::util::random_bytes(&mut b);
    b[0] &= 0x7f;
    b[0] |= 0x01;
    b.to_vec()
}

/// A self-signed certificate (DER) for `key`.
pub fn self_signed(req: &CertRequest, key: &KeyPair) -> Result<Vec<u8>, String> {
    let p = params(req)?;
    p.self_signed(key)
        .map(|c| c.der().to_vec())
        .map_err(|e| format!("certificate: {e}"))
}

/// PKCS#12 with an empty password: the key (PKCS#8 DER, if any) with `certs` (leaf first).
pub fn pfx_encode(key: Option<&[u8]>, certs: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
    let err = |e: p12_keystore::error::Error| format!("PKCS#12: {e}");
    let certs: Vec<Certificate> = certs
        .iter()
        .map(|c| Certificate::from_der(c))
        .collect::<Result<_, _>>()
        .map_err(err)?;
    let mut ks = KeyStore::new();
    match key {
        Some(key) => {
            let key = PrivateKey::from_der(key).map_err(err)?;
            let id = aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
                certs.first().map(|c| c.as_der()).unwrap_or_default(),
            );
            let chain = PrivateKeyChain::new(id.as_ref(), key, certs);
            ks.add_entry("1", KeyStoreEntry::PrivateKeyChain(chain));
        }
        None => {
            for (i, c) in certs.into_iter().enumerate() {
                ks.add_entry(&format!("{}", i + 1), KeyStoreEntry::Certificate(c));
            }
        }
    }
    ks.writer("").write().map_err(err)
}

/// Decoded PKCS#12 or PEM content: the private key (PKCS#8 DER) and the certificates (DER),
/// leaf first.
#[derive(Debug, Clone, Default)]
pub struct Material {
    /// PKCS#8 DER private key.
    pub key: Option<Vec<u8>>,
    /// Certificates, the one matching the key first, the others in their original order.
    pub certs: Vec<Vec<u8>>,
}

/// Reads a PKCS#12 file.
pub fn pfx_decode(der: &[u8], password: &str) -> Result<Material, String> {
    let archive = p12_keystore::Pkcs12Archive::from_pkcs12(der, password)
        .map_err(|e| format!("the PKCS#12 content could not be read (wrong password?): {e}"))?;
    let key = archive.keys.first();
    let mut certs: Vec<Vec<u8>> = Vec::new();
    let leaf = key.and_then(|k| {
        let id = k.local_key_id.as_ref()?;
        archive
            .certs
            .iter()
            .position(|c| c.local_key_id.as_deref() == Some(id.as_ref()))
    });
    if let Some(i) = leaf {
        certs.push(archive.certs[i].cert.as_der().to_vec());
    }
    for (i, c) in archive.certs.iter().enumerate() {
        if Some(i) != leaf {
            certs.push(c.cert.as_der().to_vec());
        }
    }
    Ok(Material {
        key: key.map(|k| k.key.as_der().to_vec()),
        certs,
    })
}

/// Reads PEM text: one private key (`PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`) and
/// certificates, in their order.
pub fn pem_decode(text: &str) -> Result<Material, String> {
    let blocks = pem::parse_many(text).map_err(|e| format!("the PEM content is not valid: {e}"))?;
    let mut m = Material::default();
    for b in blocks {
        match b.tag() {
            "CERTIFICATE" => m.certs.push(b.contents().to_vec()),
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {
                if m.key.is_some() {
                    return Err("the PEM content holds more than one private key".into());
                }
                let kp = KeyPair::from_pem(&pem::encode(&b))
                    .map_err(|e| format!("the private key is not usable: {e}"))?;
                m.key = Some(if b.tag() == "PRIVATE KEY" {
                    b.contents().to_vec()
                } else {
                    kp.serialize_der()
                });
            }
            other => return Err(format!("unexpected PEM block {other}")),
        }
    }
    if m.certs.is_empty() {
        return Err("the content holds no certificate".into());
    }
    Ok(m)
}

/// PEM text: the key (`PRIVATE KEY`, PKCS#8) first if any, then the certificates in order.
pub fn pem_encode(key: Option<&[u8]>, certs: &[Vec<u8>]) -> String {
    let mut out = String::new();
    if let Some(k) = key {
        out.push_str(&pem::encode(&pem::Pem::new("PRIVATE KEY", k.to_vec())));
    }
    for c in certs {
        out.push_str(&pem::encode(&pem::Pem::new("CERTIFICATE", c.clone())));
    }
    out.replace("\r\n", "\n")
}

/// Standard base64 (what Key Vault puts in a PKCS#12 secret's value and in `cer`).
pub fn b64(b: &[u8]) -> String {
    STANDARD.encode(b)
}
