//! Certificate and key material turned into the files TLS servers and tools
//! read. Pure functions: no I/O, no clock, no logging.
//!
//! - [`bundle`]: a certificate's secret (base64 PKCS#12 with an empty
//!   password, or PEM) into `tls.crt`, `tls.key`, `tls.pem`, `leaf.crt`,
//!   `ca.crt` and `cert.pfx`, byte-compatible with the Secrets Store CSI
//!   driver's Azure provider where it writes the same thing.
//! - [`chain`]: certificate ordering leaf -> intermediates -> root by
//!   authority/subject key identifier, and the leaf's metadata.
//! - [`privkey`]: private keys as PKCS#8, PKCS#1 and SEC1.
//! - [`jwk`]: a public JSON Web Key as an SPKI `PUBLIC KEY` PEM.
//! - [`pfx_guard`]: limits a PKCS#12 file must meet before it is decoded.
//!
//! Every buffer that holds private key material is a [`Zeroizing`] vector,
//! sized before it is written so that no reallocation leaves a copy behind.
//! Errors name what failed, never input bytes.

pub mod bundle;
pub mod chain;
pub mod jwk;
pub mod pfx_guard;
pub mod privkey;

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod tests_hostile;
#[cfg(test)]
mod tests_jwk;

use der::pem::LineEnding;
use zeroize::Zeroizing;

pub use bundle::LeafInfo;

/// Why certificate or key material could not be converted.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ObjectError {
    #[error("the certificate's secret is not base64 PKCS#12 with an empty password ({0}); check that the certificate was imported or created with content type application/x-pkcs12")]
    Pkcs12(String),
    #[error("the certificate's secret is not usable PEM ({0}); check that it holds the private key and certificates as PEM blocks")]
    Pem(String),
    #[error("the certificate's secret holds no certificate")]
    NoCertificate,
    #[error("a certificate in the chain cannot be parsed ({0})")]
    Certificate(String),
    #[error("the private key cannot be read ({0})")]
    PrivateKey(String),
    #[error("{0}")]
    UnsupportedKey(String),
    #[error("the content type {0:?} is not a certificate's (application/x-pkcs12 or application/x-pem-file)")]
    NotCertificate(String),
    /// Material past the limits akvfs decodes (sizes, counts, iterations),
    /// which Key Vault never returns.
    #[error("{0}, which Key Vault never returns; refused without decoding it: check what answers for the vault (a proxy, or another host in its place)")]
    Refused(String),
}

/// The content type of a certificate's secret stored as PKCS#12.
pub const PKCS12: &str = "application/x-pkcs12";
/// The content type of a certificate's secret stored as PEM.
pub const PEM: &str = "application/x-pem-file";

/// PEM text of one DER block, the way Go's `pem.EncodeToMemory` writes it
/// (64-character lines, LF), appended to `out`. `out` is grown to its final
/// size first, so key material is never left behind by a reallocation.
pub(crate) fn pem_append(
    label: &'static str,
    der: &[u8],
    out: &mut Zeroizing<Vec<u8>>,
) -> Result<(), ObjectError> {
    let len = der::pem::encoded_len(label, LineEnding::LF, der)
        .map_err(|e| ObjectError::Pem(e.to_string()))?;
    reserve_exact(out, len);
    let start = out.len();
    out.resize(start + len, 0);
    der::pem::encode(label, LineEnding::LF, der, &mut out[start..])
        .map_err(|e| ObjectError::Pem(e.to_string()))?;
    Ok(())
}

/// PEM of public material (certificates, public keys).
pub(crate) fn pem_public(label: &'static str, der: &[u8]) -> Result<Vec<u8>, ObjectError> {
    let mut out = Zeroizing::new(Vec::new());
    pem_append(label, der, &mut out)?;
    Ok(std::mem::take(&mut *out))
}

/// Grows a zeroizing buffer to hold `more` bytes, moving its content to a
/// new allocation and wiping the old one.
pub(crate) fn reserve_exact(buf: &mut Zeroizing<Vec<u8>>, more: usize) {
    if buf.capacity() - buf.len() >= more {
        return;
    }
    let mut bigger = Zeroizing::new(Vec::with_capacity(buf.len() + more));
    bigger.extend_from_slice(buf);
    *buf = bigger;
}

/// Concatenates parts into one exactly sized zeroizing buffer.
pub(crate) fn concat(parts: &[&[u8]]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(parts.iter().map(|p| p.len()).sum()));
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// DER encoding of `value` into an exactly sized zeroizing buffer.
pub(crate) fn der_zeroizing<T: der::Encode>(value: &T) -> Result<Zeroizing<Vec<u8>>, der::Error> {
    let len = value.encoded_len()?;
    let mut out = Zeroizing::new(vec![0u8; u32::from(len) as usize]);
    let written = value.encode_to_slice(&mut out)?.len();
    out.truncate(written);
    Ok(out)
}
