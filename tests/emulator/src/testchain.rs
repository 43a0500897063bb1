//! Test chains (root CA, intermediate, leaf) for tests that need complete or broken chains.
//!
//! Test chains: root CA -> intermediate CA -> leaf, RSA or EC, as DER with PKCS#12 and PEM
//! bundles, for tests that need complete and incomplete chains.

use crate::certgen::{b64, params, pem_encode, pfx_encode, CertRequest, KeySpec};
use rcgen::Issuer;

/// A test chain to generate: root CA -> intermediate CA -> leaf.
#[derive(Debug, Clone)]
pub struct ChainSpec {
    /// Key of every certificate in the chain.
    pub key: KeySpec,
    /// Subject CN of the leaf (also its DNS name).
    pub leaf_cn: String,
}

impl ChainSpec {
    /// An RSA 2048 chain for `leaf_cn`.
    pub fn rsa(leaf_cn: &str) -> Self {
        ChainSpec {
            key: KeySpec::Rsa(2048),
            leaf_cn: leaf_cn.to_string(),
        }
    }

    /// A P-256 chain for `leaf_cn`.
    pub fn ec(leaf_cn: &str) -> Self {
        ChainSpec {
            key: KeySpec::Ec("P-256"),
            leaf_cn: leaf_cn.to_string(),
        }
    }

    /// Generates the chain.
    pub fn generate(&self) -> Result<TestChain, String> {
        let req = |cn: &str, ca: bool| CertRequest {
            subject: format!("CN={cn}, O=akvfs test"),
            dns_names: if ca { Vec::new() } else { vec![cn.to_string()] },
            validity_months: 12,
            ca,
        };
        let root_key = self.key.generate()?;
        let root_params = params(&req("akvfs test root", true))?;
        let root = root_params
            .self_signed(&root_key)
            .map_err(|e| format!("root: {e}"))?;
        let root_issuer = Issuer::new(root_params, root_key);
        let int_key = self.key.generate()?;
        let int_params = params(&req("akvfs test intermediate", true))?;
        let int = int_params
            .signed_by(&int_key, &root_issuer)
            .map_err(|e| format!("intermediate: {e}"))?;
        let int_issuer = Issuer::new(int_params, int_key);
        let leaf_key = self.key.generate()?;
        let leaf = params(&req(&self.leaf_cn, false))?
            .signed_by(&leaf_key, &int_issuer)
            .map_err(|e| format!("leaf: {e}"))?;
        Ok(TestChain {
            root: root.der().to_vec(),
            intermediate: int.der().to_vec(),
            leaf: leaf.der().to_vec(),
            leaf_key: leaf_key.serialize_der(),
        })
    }
}

/// A generated chain (DER certificates, PKCS#8 DER leaf key).
#[derive(Debug, Clone)]
pub struct TestChain {
    /// Self-signed root CA.
    pub root: Vec<u8>,
    /// Intermediate CA signed by the root.
    pub intermediate: Vec<u8>,
    /// Leaf signed by the intermediate.
    pub leaf: Vec<u8>,
    /// The leaf's private key, PKCS#8 DER.
    pub leaf_key: Vec<u8>,
}

impl TestChain {
    /// Leaf, intermediate, root: the complete chain.
    pub fn complete(&self) -> Vec<Vec<u8>> {
        vec![
            self.leaf.clone(),
            self.intermediate.clone(),
            self.root.clone(),
        ]
    }

    /// Leaf and intermediate: the root is missing.
    pub fn incomplete(&self) -> Vec<Vec<u8>> {
        vec![self.leaf.clone(), self.intermediate.clone()]
    }

    /// Base64 PKCS#12 (empty password) of the key and `certs`.
    pub fn pfx_base64(&self, certs: &[Vec<u8>]) -> Result<String, String> {
        pfx_encode(Some(&self.leaf_key), certs).map(|d| b64(&d))
    }

    /// PEM of the key (PKCS#8) and `certs`.
    pub fn pem(&self, certs: &[Vec<u8>]) -> String {
        pem_encode(Some(&self.leaf_key), certs)
    }

    /// PEM of one certificate.
    pub fn cert_pem(der: &[u8]) -> String {
        pem_encode(None, &[der.to_vec()])
    }
}
