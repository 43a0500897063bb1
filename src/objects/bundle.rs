//! A certificate's secret (what `GET /secrets/{name}` returns for a Key
//! Vault certificate) turned into the files of `.certs/<name>/`.
//!
//! For `application/x-pkcs12` the value is a base64 PFX with an empty
//! password. `tls.pem` is what the provider writes for it: every private key
//! as PKCS#8 `PRIVATE KEY` first, then the certificates ordered leaf ->
//! intermediates -> root ([`super::chain::order`]). For
//! `application/x-pem-file`, `tls.pem` is the value as stored, as the
//! provider writes it. In both cases `tls.crt` holds the certificates leaf
//! -> root, `tls.key` the key as a Kubernetes TLS secret holds it (PKCS#1 or
//! SEC1), `leaf.crt` the first certificate and `ca.crt` the others.

use base64::Engine;
use p12_keystore::Pkcs12Archive;
use zeroize::Zeroizing;

use super::chain::{self, LeafInfo as Leaf};
use super::pfx_guard::{self, MAX_PFX_BYTES};
use super::privkey::{self, PrivateKey};
use super::{concat, pem_append, ObjectError, PEM, PKCS12};

/// Largest PEM certificate secret decoded (Key Vault stores at most 25 KB).
pub const MAX_PEM_BYTES: usize = 128 * 1024;
/// Most certificates (and PEM blocks) in one certificate's secret: chains
/// are ordered pairwise, so the count bounds the work.
pub const MAX_CERTIFICATES: usize = 32;

pub use super::chain::LeafInfo;

/// The files of one certificate version. Private material is wiped on drop.
pub struct CertParts {
    /// Certificates leaf -> root as PEM (the original order when the chain
    /// is incomplete).
    pub tls_crt: Vec<u8>,
    /// The first certificate of `tls_crt`.
    pub leaf_crt: Vec<u8>,
    /// The others (empty for a lone certificate).
    pub ca_crt: Vec<u8>,
    /// PKCS#1 `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY`; `None` when the
    /// secret holds no key (a non-exportable certificate).
    pub tls_key: Option<Zeroizing<Vec<u8>>>,
    /// Key then chain, the provider's bytes.
    pub tls_pem: Zeroizing<Vec<u8>>,
    /// The binary PFX, for PKCS#12 certificates.
    pub pfx: Option<Zeroizing<Vec<u8>>>,
    /// Metadata of the leaf.
    pub leaf: Leaf,
    /// Whether the certificates formed one chain and were reordered (the
    /// tests check the ordering decision through it).
    #[cfg_attr(not(test), allow(dead_code))]
    pub complete_chain: bool,
}

impl std::fmt::Debug for CertParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertParts")
            .field("leaf", &self.leaf)
            .field("has_key", &self.tls_key.is_some())
            .finish_non_exhaustive()
    }
}

/// Builds the parts from a certificate's secret value and content type.
pub fn from_secret(value: &[u8], content_type: Option<&str>) -> Result<CertParts, ObjectError> {
    match content_type {
        Some(PKCS12) => from_pkcs12_base64(value),
        Some(PEM) => from_pem(value),
        other => Err(ObjectError::NotCertificate(
            other.unwrap_or("(none)").to_string(),
        )),
    }
}

/// `leaf.crt` and the leaf's metadata from a certificate's public part (the
/// DER `cer` of `GET /certificates/{name}`), for an identity that may read
/// certificates but not the secrets behind them.
pub fn leaf_from_der(cer: &[u8]) -> Result<(Vec<u8>, Leaf), ObjectError> {
    let leaf = chain::info(cer)?;
    Ok((super::pem_public("CERTIFICATE", cer)?, leaf))
}

fn from_pkcs12_base64(value: &[u8]) -> Result<CertParts, ObjectError> {
    let text = value.trim_ascii();
    if text.len() / 4 * 3 > MAX_PFX_BYTES {
        return Err(refused(pfx_guard::Refusal::TooLarge));
    }
    let engine = &base64::engine::general_purpose::STANDARD;
    let mut pfx = Zeroizing::new(vec![0u8; text.len() / 4 * 3 + 3]);
    let n = engine
        .decode_slice(text, &mut pfx[..])
        .map_err(|e| ObjectError::Pkcs12(format!("base64: {e}")))?;
    pfx.truncate(n);
    pfx_guard::check(&pfx).map_err(refused)?;
    let archive =
        Pkcs12Archive::from_pkcs12(&pfx, "").map_err(|e| ObjectError::Pkcs12(e.to_string()))?;
    let keys = archive
        .keys
        .iter()
        .map(|k| privkey::from_pkcs8(k.key.as_der()))
        .collect::<Result<Vec<_>, _>>()?;
    if archive.certs.len() > MAX_CERTIFICATES {
        return Err(too_many("certificates"));
    }
    let certs: Vec<Vec<u8>> = archive
        .certs
        .iter()
        .map(|c| c.cert.as_der().to_vec())
        .collect();
    let mut parts = assemble(certs, &keys, None)?;
    parts.pfx = Some(pfx);
    Ok(parts)
}

fn refused(why: pfx_guard::Refusal) -> ObjectError {
    ObjectError::Refused(format!(
        "the certificate's PKCS#12 file is past akvfs's limits: {why}"
    ))
}

fn too_many(what: &str) -> ObjectError {
    ObjectError::Refused(format!(
        "the certificate's secret holds more than {MAX_CERTIFICATES} {what}"
    ))
}

fn from_pem(value: &[u8]) -> Result<CertParts, ObjectError> {
    if value.len() > MAX_PEM_BYTES {
        return Err(ObjectError::Refused(format!(
            "the certificate's PEM secret is larger than {MAX_PEM_BYTES} bytes"
        )));
    }
    let mut certs = Vec::new();
    let mut keys = Vec::new();
    let blocks = pem_blocks(value);
    if blocks.len() > MAX_CERTIFICATES {
        return Err(too_many("PEM blocks"));
    }
    for block in blocks {
        let mut decoder =
            der::pem::Decoder::new(block).map_err(|e| ObjectError::Pem(e.to_string()))?;
        let label = decoder.type_label();
        let mut der = Zeroizing::new(vec![0u8; decoder.remaining_len()]);
        let n = decoder
            .decode(&mut der[..])
            .map_err(|e| ObjectError::Pem(e.to_string()))?
            .len();
        der.truncate(n);
        if label == "CERTIFICATE" {
            certs.push(der.to_vec());
        } else if label.ends_with("PRIVATE KEY") {
            keys.push(privkey::from_pem_block(label, &der)?);
        }
    }
    assemble(certs, &keys, Some(Zeroizing::new(value.to_vec())))
}

/// The PEM blocks of a text, BEGIN line through END line.
fn pem_blocks(text: &[u8]) -> Vec<&[u8]> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    const END: &[u8] = b"-----END ";
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(b) = find(rest, BEGIN) {
        rest = &rest[b..];
        let Some(e) = find(rest, END) else { break };
        let after = e + END.len();
        let Some(close) = find(&rest[after..], b"-----") else {
            break;
        };
        let stop = after + close + 5;
        out.push(&rest[..stop]);
        rest = &rest[stop..];
    }
    out
}

fn assemble(
    certs: Vec<Vec<u8>>,
    keys: &[PrivateKey],
    stored_pem: Option<Zeroizing<Vec<u8>>>,
) -> Result<CertParts, ObjectError> {
    if certs.is_empty() {
        return Err(ObjectError::NoCertificate);
    }
    let (chain, complete) = chain::order(certs)?;
    let leaf = chain::info(&chain[0])?;
    let mut tls_crt = Zeroizing::new(Vec::new());
    let mut leaf_crt = Zeroizing::new(Vec::new());
    let mut ca_crt = Zeroizing::new(Vec::new());
    for (i, der) in chain.iter().enumerate() {
        pem_append("CERTIFICATE", der, &mut tls_crt)?;
        pem_append(
            "CERTIFICATE",
            der,
            if i == 0 { &mut leaf_crt } else { &mut ca_crt },
        )?;
    }
    let tls_pem = match stored_pem {
        Some(stored) => stored,
        None => {
            let mut key_pem = Zeroizing::new(Vec::new());
            for k in keys {
                pem_append("PRIVATE KEY", &k.pkcs8, &mut key_pem)?;
            }
            concat(&[&key_pem, &tls_crt])
        }
    };
    let tls_key = match keys.first() {
        Some(k) => {
            let mut out = Zeroizing::new(Vec::new());
            pem_append(k.traditional_label, &k.traditional, &mut out)?;
            Some(out)
        }
        None => None,
    };
    Ok(CertParts {
        tls_crt: std::mem::take(&mut *tls_crt),
        leaf_crt: std::mem::take(&mut *leaf_crt),
        ca_crt: std::mem::take(&mut *ca_crt),
        tls_key,
        tls_pem,
        pfx: None,
        leaf,
        complete_chain: complete,
    })
}
