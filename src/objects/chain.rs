//! Certificate chains: ordering leaf -> intermediates -> root, as the CSI
//! driver's Azure provider orders them, and the leaf's metadata.

use base64::Engine;
use der::Decode;
use sha1::{Digest, Sha1};
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, SubjectKeyIdentifier};
use x509_cert::Certificate;

use super::ObjectError;

/// What the xattrs and metrics show of a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafInfo {
    /// Base64url SHA-1 thumbprint of the DER, as Key Vault's `x5t`.
    pub x5t: String,
    /// Unix seconds.
    pub not_after: i64,
    pub subject: String,
    pub issuer: String,
}

/// One parsed certificate with its DER.
struct Node {
    der: Vec<u8>,
    ski: Option<Vec<u8>>,
    aki: Option<Vec<u8>>,
}

fn parse(der: &[u8]) -> Result<Certificate, ObjectError> {
    Certificate::from_der(der).map_err(|e| ObjectError::Certificate(e.to_string()))
}

fn node(der: Vec<u8>) -> Result<Node, ObjectError> {
    let cert = parse(&der)?;
    let tbs = cert.tbs_certificate();
    let ski = tbs
        .get_extension::<SubjectKeyIdentifier>()
        .map_err(|e| ObjectError::Certificate(e.to_string()))?
        .map(|(_, s)| s.0.as_bytes().to_vec());
    let aki = tbs
        .get_extension::<AuthorityKeyIdentifier>()
        .map_err(|e| ObjectError::Certificate(e.to_string()))?
        .and_then(|(_, a)| a.key_identifier.map(|k| k.as_bytes().to_vec()));
    Ok(Node { der, ski, aki })
}

/// Orders certificates leaf -> intermediates -> root: each certificate's
/// parent is the first other certificate whose subject key identifier equals
/// its authority key identifier; the leaf is the first certificate that is
/// no other's parent. When the walk from the leaf does not reach every
/// certificate (an incomplete or branching chain), the original order is
/// kept, as the provider keeps it. Returns the certificates and whether
/// they were reordered as a complete chain.
///
/// One deliberate difference: a certificate without an authority key
/// identifier has no parent here, where the provider would match an empty
/// identifier with an empty one and fail.
pub fn order(ders: Vec<Vec<u8>>) -> Result<(Vec<Vec<u8>>, bool), ObjectError> {
    let nodes = ders.into_iter().map(node).collect::<Result<Vec<_>, _>>()?;
    let n = nodes.len();
    let mut parent: Vec<Option<usize>> = vec![None; n];
    let mut is_parent = vec![false; n];
    for i in 0..n {
        let Some(aki) = &nodes[i].aki else { continue };
        if let Some(j) = (0..n).find(|&j| j != i && nodes[j].ski.as_ref() == Some(aki)) {
            parent[i] = Some(j);
            is_parent[j] = true;
        }
    }
    let mut ordered = Vec::with_capacity(n);
    if let Some(leaf) = (0..n).find(|&i| !is_parent[i]) {
        let mut cur = Some(leaf);
        while let Some(i) = cur {
            if ordered.len() >= n || ordered.contains(&i) {
                break;
            }
            ordered.push(i);
            cur = parent[i];
        }
    }
    let complete = ordered.len() == n && n > 0;
    let mut nodes: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    if complete {
        Ok((
            ordered
                .into_iter()
                .filter_map(|i| nodes[i].take().map(|n| n.der))
                .collect(),
            true,
        ))
    } else {
        Ok((nodes.into_iter().flatten().map(|n| n.der).collect(), false))
    }
}

/// The metadata of one certificate.
pub fn info(der: &[u8]) -> Result<LeafInfo, ObjectError> {
    let cert = parse(der)?;
    let tbs = cert.tbs_certificate();
    let not_after = tbs.validity().not_after.to_unix_duration().as_secs();
    Ok(LeafInfo {
        x5t: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha1::digest(der)),
        not_after: i64::try_from(not_after).unwrap_or(i64::MAX),
        subject: tbs.subject().to_string(),
        issuer: tbs.issuer().to_string(),
    })
}
