//! The official Rust keys crate (azure_security_keyvault_keys) against the emulator: RSA and EC
//! keys created and imported, public JWKs only, versions, paging, a certificate's key (managed,
//! same version id), KeyNotFound and permissions.

mod common;

use akvfs_emulator::certgen;
use akvfs_emulator::{Emulator, ObjectPermissions, SeedCertVersion, SeedKeyVersion, SeedPolicy};
use azure_core::http::RetryOptions;
use azure_security_keyvault_keys::models::{
    CreateKeyParameters, CurveName, ImportKeyParameters, JsonWebKey, KeyClientGetKeyOptions,
    KeyClientListKeyPropertiesOptions, KeyType,
};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};
use common::*;
use futures::TryStreamExt;

fn key_client(emu: &Emulator) -> KeyClient {
    KeyClient::new(
        &emu.info().vault_url,
        workload_credential(emu),
        Some(KeyClientOptions {
            client_options: client_options(emu, RetryOptions::none()),
            verify_challenge_resource: Some(false),
            ..Default::default()
        }),
    )
    .expect("key client builds")
}

#[tokio::test]
async fn create_rsa_and_ec_keys_and_read_public_jwks() {
    let emu = emulator().await;
    let client = key_client(&emu);
    for (name, kty, size, curve, coord) in [
        ("rsa2048", KeyType::Rsa, Some(2048), None, 256usize),
        ("rsa3072", KeyType::Rsa, Some(3072), None, 384),
        ("ec256", KeyType::Ec, None, Some(CurveName::P256), 32),
        ("ec384", KeyType::Ec, None, Some(CurveName::P384), 48),
        ("ec521", KeyType::Ec, None, Some(CurveName::P521), 66),
    ] {
        let body = CreateKeyParameters {
            kty: Some(kty.clone()),
            key_size: size,
            curve: curve.clone(),
            ..Default::default()
        };
        let created = client
            .create_key(name, body.try_into().expect("serializes"), None)
            .await
            .expect("create")
            .into_model()
            .expect("parses");
        let jwk = created.key.expect("key");
        assert_eq!(jwk.kty, Some(kty));
        assert!(jwk.d.is_none() && jwk.p.is_none(), "no private member");
        if size.is_some() {
            assert_eq!(jwk.n.as_ref().map(Vec::len), Some(coord), "{name}: modulus");
            assert_eq!(jwk.e.as_deref(), Some(&[1u8, 0, 1][..]));
        } else {
            assert_eq!(jwk.crv, curve);
            assert_eq!(jwk.x.as_ref().map(Vec::len), Some(coord), "{name}: x");
            assert_eq!(jwk.y.as_ref().map(Vec::len), Some(coord), "{name}: y");
        }
        let got = client
            .get_key(name, None)
            .await
            .expect("get")
            .into_model()
            .expect("parses");
        assert_eq!(got.key.and_then(|k| k.kid), jwk.kid);
    }
}

#[tokio::test]
async fn import_versions_paging_and_errors() {
    let emu = emulator().await;
    let client = key_client(&emu);
    let v1 = emu
        .add_key_version(
            "imported",
            &SeedKeyVersion {
                kty: Some("EC".into()),
                ..Default::default()
            },
        )
        .expect("seeded");
    // Import the public half of a fresh P-256 key through the SDK.
    let kp = certgen::KeySpec::Ec("P-256").generate().expect("key");
    let spki = certgen::key_spki(&kp).expect("spki");
    let jwk = certgen::public_jwk(&spki).expect("jwk");
    let decode = |k: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(jwk[k].as_str().expect("member"))
            .expect("base64url")
    };
    let body = ImportKeyParameters {
        key: Some(JsonWebKey {
            kty: Some(KeyType::Ec),
            crv: Some(CurveName::P256),
            x: Some(decode("x")),
            y: Some(decode("y")),
            ..Default::default()
        }),
        ..Default::default()
    };
    let v2 = client
        .import_key("imported", body.try_into().expect("serializes"), None)
        .await
        .expect("import")
        .into_model()
        .expect("parses");
    assert_eq!(v2.key.as_ref().and_then(|k| k.x.clone()), Some(decode("x")));
    let old = client
        .get_key(
            "imported",
            Some(KeyClientGetKeyOptions {
                key_version: Some(v1.clone()),
                ..Default::default()
            }),
        )
        .await
        .expect("old version")
        .into_model()
        .expect("parses");
    assert!(old.key.and_then(|k| k.kid).expect("kid").ends_with(&v1));
    let mut versions = 0;
    let mut pager = client
        .list_key_properties_versions("imported", None)
        .expect("pager");
    while pager.try_next().await.expect("page").is_some() {
        versions += 1;
    }
    assert_eq!(versions, 2);
    for i in 0..3 {
        emu.add_key_version(
            &format!("k{i}"),
            &SeedKeyVersion {
                kty: Some("EC".into()),
                ..Default::default()
            },
        )
        .expect("seeded");
    }
    let options = KeyClientListKeyPropertiesOptions {
        maxresults: Some(1),
        ..Default::default()
    };
    let mut pager = client.list_key_properties(Some(options)).expect("pager");
    let mut names = Vec::new();
    while let Some(item) = pager.try_next().await.expect("page") {
        names.push(
            item.kid
                .expect("kid")
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert_eq!(names, ["imported", "k0", "k1", "k2"]);
    let err = client.get_key("missing", None).await.expect_err("404");
    assert_eq!(error_parts(&err).0, 404);
    assert_eq!(error_parts(&err).1, "KeyNotFound");
    let client_id = emu.info().client_id.clone();
    emu.set_object_permissions(&client_id, None, Some(ObjectPermissions::none()))
        .expect("revoke");
    let err = client.get_key("k0", None).await.expect_err("403");
    assert_eq!(error_parts(&err).0, 403);
}

#[tokio::test]
async fn a_certificates_key_is_managed_and_shares_the_version() {
    let emu = emulator().await;
    let version = emu
        .add_certificate_version(
            "web",
            &SeedCertVersion {
                policy: Some(SeedPolicy {
                    subject: "CN=web".into(),
                    kty: Some("RSA".into()),
                    key_size: Some(2048),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .expect("seeded");
    let client = key_client(&emu);
    let key = client
        .get_key("web", None)
        .await
        .expect("get")
        .into_model()
        .expect("parses");
    assert_eq!(key.managed, Some(true));
    assert!(key
        .key
        .and_then(|k| k.kid)
        .expect("kid")
        .ends_with(&format!("/keys/web/{version}")));
}
