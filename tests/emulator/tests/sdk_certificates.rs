//! The official Rust certificates crate (azure_security_keyvault_certificates) against the
//! emulator: create with the self-signed issuer (RSA and EC), import PKCS#12 and PEM chains,
//! versions, paging, the backing secret (kid, managed, content type, no key when not
//! exportable), permissions and not-found errors.

mod common;

use akvfs_emulator::certgen::{self, ChainSpec};
use akvfs_emulator::{Emulator, Identity, ObjectPermissions, SeedCertVersion};
use azure_core::http::poller::PollerOptions;
use azure_core::http::RetryOptions;
use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};
use azure_security_keyvault_certificates::models::{
    CertificateClientCreateCertificateOptions, CertificateClientGetCertificateOptions,
    CertificateClientListCertificatePropertiesOptions, CertificatePolicy,
    CreateCertificateParameters, CurveName, ImportCertificateParameters, IssuerParameters,
    KeyProperties, KeyType, SecretProperties, X509CertificateProperties,
};
use azure_security_keyvault_certificates::{CertificateClient, CertificateClientOptions};
use common::*;
use futures::TryStreamExt;
use std::sync::Arc;

fn cert_client(
    emu: &Emulator,
    credential: Arc<dyn azure_core::credentials::TokenCredential>,
) -> CertificateClient {
    CertificateClient::new(
        &emu.info().vault_url,
        credential,
        Some(CertificateClientOptions {
            client_options: client_options(emu, RetryOptions::none()),
            verify_challenge_resource: Some(false),
            ..Default::default()
        }),
    )
    .expect("certificate client builds")
}

fn policy(kty: KeyType, curve: Option<CurveName>, content_type: &str) -> CertificatePolicy {
    CertificatePolicy {
        x509_certificate_properties: Some(X509CertificateProperties {
            subject: Some("CN=app.example.com".into()),
            validity_in_months: Some(12),
            ..Default::default()
        }),
        issuer_parameters: Some(IssuerParameters {
            name: Some("Self".into()),
            ..Default::default()
        }),
        key_properties: Some(KeyProperties {
            key_type: Some(kty),
            curve,
            exportable: Some(true),
            ..Default::default()
        }),
        secret_properties: Some(SecretProperties {
            content_type: Some(content_type.into()),
        }),
        ..Default::default()
    }
}

fn version_of(id: &str) -> String {
    id.rsplit('/').next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn create_self_signed_rsa_and_ec_then_read_cert_key_and_secret() {
    let emu = emulator().await;
    let cred = workload_credential(&emu);
    let client = cert_client(&emu, cred.clone());
    let secrets = secret_client(&emu, cred, RetryOptions::none());
    for (name, kty, curve, ct) in [
        ("rsa-cert", KeyType::Rsa, None, "application/x-pkcs12"),
        (
            "ec-cert",
            KeyType::Ec,
            Some(CurveName::P384),
            "application/x-pem-file",
        ),
    ] {
        let body = CreateCertificateParameters {
            certificate_policy: Some(policy(kty, curve, ct)),
            ..Default::default()
        };
        let created = client
            .begin_create_certificate(
                name,
                body.try_into().expect("serializes"),
                Some(poll_fast()),
            )
            .expect("poller builds")
            .await
            .expect("creation completes")
            .into_model()
            .expect("Certificate parses");
        let id = created.id.clone().expect("id");
        let version = version_of(&id);
        assert_eq!(version.len(), 32);
        let cer = created.cer.clone().expect("cer");
        assert_eq!(
            created.x509_thumbprint.clone().expect("x5t"),
            certgen_sha1(&cer)
        );
        assert!(created
            .kid
            .as_deref()
            .expect("kid")
            .ends_with(&format!("/keys/{name}/{version}")));
        assert!(created
            .sid
            .as_deref()
            .expect("sid")
            .ends_with(&format!("/secrets/{name}/{version}")));
        let facts = certgen::cert_facts(&cer).expect("cer is X.509");
        assert_eq!(facts.subject, "CN=app.example.com");

        let secret = secrets
            .get_secret(name, None)
            .await
            .expect("backing secret is readable")
            .into_model()
            .expect("parses");
        assert_eq!(secret.managed, Some(true));
        assert_eq!(secret.content_type.as_deref(), Some(ct));
        assert_eq!(secret.kid, created.kid);
        let value = secret.value.expect("value");
        let material = if ct == "application/x-pem-file" {
            certgen::pem_decode(&value).expect("PEM")
        } else {
            let der = base64_std(&value);
            certgen::pfx_decode(&der, "").expect("PKCS#12 with an empty password")
        };
        assert!(
            material.key.is_some(),
            "exportable: the secret holds the key"
        );
        assert_eq!(material.certs, vec![cer]);
    }
}

/// Polls every second (the default is 30 s when the service sends no Retry-After).
fn poll_fast() -> CertificateClientCreateCertificateOptions<'static> {
    CertificateClientCreateCertificateOptions {
        method_options: PollerOptions {
            frequency: azure_core::time::Duration::seconds(1),
            ..Default::default()
        },
    }
}

fn certgen_sha1(der: &[u8]) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(certgen::x5t(der))
        .expect("x5t is base64url")
}

fn base64_std(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("standard base64")
}

#[tokio::test]
async fn import_pfx_and_pem_chains_keep_order_and_versions_share_ids() {
    let emu = emulator().await;
    let cred = workload_credential(&emu);
    let client = cert_client(&emu, cred.clone());
    let secrets = secret_client(&emu, cred, RetryOptions::none());
    let chain = ChainSpec::ec("tls.example.com").generate().expect("chain");
    let pfx = chain.pfx_base64(&chain.complete()).expect("pfx");
    let body = ImportCertificateParameters {
        base64_encoded_certificate: Some(pfx),
        ..Default::default()
    };
    let v1 = client
        .import_certificate("tls", body.try_into().expect("serializes"), None)
        .await
        .expect("PFX import")
        .into_model()
        .expect("parses");
    assert_eq!(v1.cer.as_deref(), Some(chain.leaf.as_slice()));
    let rsa = ChainSpec::rsa("tls.example.com").generate().expect("chain");
    let body = ImportCertificateParameters {
        base64_encoded_certificate: Some(rsa.pem(&rsa.incomplete())),
        certificate_policy: Some(CertificatePolicy {
            secret_properties: Some(SecretProperties {
                content_type: Some("application/x-pem-file".into()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let v2 = client
        .import_certificate("tls", body.try_into().expect("serializes"), None)
        .await
        .expect("PEM import")
        .into_model()
        .expect("parses");
    let (id1, id2) = (
        version_of(&v1.id.expect("id")),
        version_of(&v2.id.expect("id")),
    );
    // The latest secret is the PEM bundle: key first, then leaf and intermediate as given.
    let secret = secrets
        .get_secret("tls", None)
        .await
        .expect("get")
        .into_model()
        .expect("parses");
    assert_eq!(
        secret.value.as_deref(),
        Some(rsa.pem(&rsa.incomplete()).as_str())
    );
    assert_eq!(version_of(secret.id.as_deref().expect("id")), id2);
    // The first version's secret is the complete chain in PKCS#12, leaf -> intermediate -> root.
    let old = client
        .get_certificate(
            "tls",
            Some(CertificateClientGetCertificateOptions {
                certificate_version: Some(id1.clone()),
                ..Default::default()
            }),
        )
        .await
        .expect("old version")
        .into_model()
        .expect("parses");
    assert_eq!(old.cer.as_deref(), Some(chain.leaf.as_slice()));
    let mut versions = Vec::new();
    let mut pager = client
        .list_certificate_properties_versions("tls", None)
        .expect("pager");
    while let Some(item) = pager.try_next().await.expect("page") {
        versions.push(version_of(item.id.as_deref().expect("id")));
    }
    assert_eq!(versions, vec![id1.clone(), id2]);
    let pfx_secret = emu.secret("tls").expect("secret").versions[0].value.clone();
    let material = certgen::pfx_decode(&base64_std(&pfx_secret), "").expect("pfx");
    assert_eq!(material.certs, chain.complete());
    assert_eq!(material.key.as_deref(), Some(chain.leaf_key.as_slice()));
}

#[tokio::test]
async fn non_exportable_secret_has_no_key_and_listing_pages() {
    let emu = emulator().await;
    let chain = ChainSpec::rsa("a.example.com").generate().expect("chain");
    for i in 0..5 {
        emu.add_certificate_version(
            &format!("cert-{i}"),
            &SeedCertVersion {
                pem: Some(chain.pem(&chain.complete())),
                exportable: Some(i % 2 == 0),
                ..Default::default()
            },
        )
        .expect("seeded");
    }
    let cred = workload_credential(&emu);
    let client = cert_client(&emu, cred);
    let options = CertificateClientListCertificatePropertiesOptions {
        maxresults: Some(2),
        ..Default::default()
    };
    let mut pager = client
        .list_certificate_properties(Some(options))
        .expect("pager");
    let mut names = Vec::new();
    while let Some(item) = pager.try_next().await.expect("page") {
        names.push(
            item.id
                .expect("id")
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert_eq!(names, ["cert-0", "cert-1", "cert-2", "cert-3", "cert-4"]);
    assert!(
        emu.counts().get("list_certificates") >= 3,
        "three pages of two"
    );
    let locked = emu.secret("cert-1").expect("secret").versions[0]
        .value
        .clone();
    let m = certgen::pem_decode(&locked).expect("PEM");
    assert!(m.key.is_none(), "non-exportable: no private key");
    assert_eq!(m.certs, chain.complete());
    assert!(!locked.contains("PRIVATE KEY"));
    let open = emu.secret("cert-0").expect("secret").versions[0]
        .value
        .clone();
    assert!(open.starts_with("-----BEGIN PRIVATE KEY-----"));
}

#[tokio::test]
async fn not_found_and_forbidden_are_key_vault_errors() {
    let emu = emulator().await;
    emu.add_certificate_version(
        "c",
        &SeedCertVersion {
            policy: Some(akvfs_emulator::SeedPolicy {
                subject: "CN=c".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .expect("seeded");
    let client = cert_client(&emu, workload_credential(&emu));
    let err = client.get_certificate("nope", None).await.expect_err("404");
    assert_eq!(error_parts(&err).0, 404);
    assert_eq!(error_parts(&err).1, "CertificateNotFound");
    let mut reader = Identity::new("0b7f3c1e-1111-4222-8333-944455566677");
    reader.client_secret = Some("pw".into());
    reader.certificates = ObjectPermissions::none();
    emu.add_identity(reader.clone()).expect("identity");
    let info = emu.info().clone();
    let cred = ClientSecretCredential::new(
        &info.tenant_id,
        reader.client_id.clone(),
        "pw".to_string().into(),
        Some(ClientSecretCredentialOptions {
            client_options: client_options(&emu, RetryOptions::none()),
        }),
    )
    .expect("credential");
    let denied = cert_client(&emu, cred);
    let err = denied.get_certificate("c", None).await.expect_err("403");
    let (status, _, inner) = error_parts(&err);
    assert_eq!((status, inner.as_deref()), (403, Some("ForbiddenByPolicy")));
    emu.set_object_permissions(
        &reader.client_id,
        Some(ObjectPermissions::read_only()),
        None,
    )
    .expect("grant");
    denied
        .get_certificate("c", None)
        .await
        .expect("now allowed");
    emu.deny_objects(&reader.client_id, Some(vec!["C".into()]), None)
        .expect("deny");
    let err = denied.get_certificate("c", None).await.expect_err("denied");
    assert_eq!(error_parts(&err).0, 403);
}
