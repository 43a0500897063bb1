//! The test PKI: a fresh CA and the server certificate it signs.
//!
//! The test PKI: a fresh CA (`CA:TRUE`) and a server certificate it signs, with a
//! `subjectAltName` for every name and address served and `extendedKeyUsage=serverAuth`, as webpki
//! (rustls) and OpenSSL (Python) require. Both are generated at start and live only in memory,
//! except the CA certificate, which is written out so clients can trust it.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;

/// The generated CA and the server's TLS configuration.
pub(crate) struct TestPki {
    /// PEM of the CA certificate.
    pub ca_pem: String,
    /// rustls server configuration with the server certificate.
    pub server_config: Arc<rustls::ServerConfig>,
}

/// Generates the CA and a server certificate for `names` (DNS names or IP addresses).
pub(crate) fn generate(names: &[String]) -> Result<TestPki, String> {
    let now = time::OffsetDateTime::now_utc();
    let err = |what: &str, e: rcgen::Error| format!("{what}: {e}");

    let mut ca_params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| err("CA parameters", e))?;
    let mut ca_dn = DistinguishedName::new();
    ca_dn.push(DnType::CommonName, "akvfs-emulator test CA");
    ca_dn.push(DnType::OrganizationName, "akvfs emulator");
    ca_params.distinguished_name = ca_dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = now - time::Duration::days(1);
    ca_params.not_after = now + time::Duration::days(365);
    let ca_key = KeyPair::generate().map_err(|e| err("CA key", e))?;
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(|e| err("CA certificate", e))?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut leaf_params =
        CertificateParams::new(names.to_vec()).map_err(|e| err("server certificate names", e))?;
    let mut leaf_dn = DistinguishedName::new();
    leaf_dn.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_else(|| "localhost".into()),
    );
    leaf_params.distinguished_name = leaf_dn;
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    leaf_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.use_authority_key_identifier_extension = true;
    leaf_params.not_before = now - time::Duration::days(1);
    leaf_params.not_after = now + time::Duration::days(365);
    let leaf_key = KeyPair::generate().map_err(|e| err("server key", e))?;
    let leaf_cert = leaf_params
        .signed_by(&leaf_key, &issuer)
        .map_err(|e| err("server certificate", e))?;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(
            vec![
                CertificateDer::from(leaf_cert.der().to_vec()),
                CertificateDer::from(ca_cert.der().to_vec()),
            ],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .map_err(|e| format!("TLS server configuration: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TestPki {
        ca_pem: ca_cert.pem(),
        server_config: Arc::new(config),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_for_names_and_addresses() {
        let pki = generate(&[
            "127.0.0.1".to_string(),
            "localhost".to_string(),
            "myvault.vault.azure.net".to_string(),
        ])
        .expect("generates");
        assert!(pki.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
