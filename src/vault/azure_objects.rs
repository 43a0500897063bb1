//! Certificates, keys and versions over the official Key Vault certificates
//! and keys SDKs (and the secrets SDK's versions listing). Like `azure.rs`,
//! one of the few files that name Azure SDK types.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use azure_core::credentials::TokenCredential;
use azure_core::http::Transport;
use azure_security_keyvault_certificates::models::CertificateClientGetCertificateOptions;
use azure_security_keyvault_certificates::{CertificateClient, CertificateClientOptions};
use azure_security_keyvault_keys::models::{
    KeyClientGetKeyOptions, KeyClientListKeyPropertiesOptions,
};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};
use azure_security_keyvault_secrets::models::SecretClientListSecretPropertiesVersionsOptions;
use futures::TryStreamExt;

use super::{client_options, AzureVault, SetupError, IDENTITY_RECHECK};
use crate::objects::jwk::PublicJwk;
use crate::secret::{SecretName, VersionId};
use crate::sync::lock;
use crate::vault::objects::version_of;
use crate::vault::{CertificateBundle, KeyBundle, VaultError, VersionItem};

type Clients = (Arc<CertificateClient>, Arc<KeyClient>, Instant);

/// The certificate and key clients, made on first use and replaced with
/// the secret client's period, so an identity's token is not kept longer.
#[derive(Default)]
pub(super) struct ObjectClients(Mutex<Option<Clients>>);

fn unix(t: Option<time::OffsetDateTime>) -> Option<i64> {
    t.map(|t| t.unix_timestamp())
}

impl AzureVault {
    fn object_clients(
        &self,
        fresh: bool,
    ) -> Result<(Arc<CertificateClient>, Arc<KeyClient>), VaultError> {
        let mut slot = lock(&self.objects.0);
        if let Some((c, k, at)) = slot.as_ref() {
            if !fresh && at.elapsed() < IDENTITY_RECHECK {
                return Ok((Arc::clone(c), Arc::clone(k)));
            }
        }
        let (c, k) = build(
            &self.url,
            &self.credential,
            &self.transport,
            self.verify_challenge_resource,
        )
        // The vault layer's errors are text by design (cloned to every waiter).
        .map_err(|e| VaultError::Auth(e.to_string().into()))?;
        let (c, k) = (Arc::new(c), Arc::new(k));
        *slot = Some((Arc::clone(&c), Arc::clone(&k), Instant::now()));
        Ok((c, k))
    }

    pub(super) async fn versions_once(
        &self,
        name: &SecretName,
        fresh: bool,
    ) -> Result<Vec<VersionItem>, VaultError> {
        let options = SecretClientListSecretPropertiesVersionsOptions {
            maxresults: Some(25),
            method_options: azure_core::http::pager::PagerOptions {
                context: Self::context(fresh).context,
                ..Default::default()
            },
        };
        let mut pages = self
            .client()
            .list_secret_properties_versions(name.as_str(), Some(options))
            .map_err(|e| self.map_error(e, "list"))?
            .into_pages();
        let mut out = Vec::new();
        while let Some(page) = pages
            .try_next()
            .await
            .map_err(|e| self.map_error(e, "list"))?
        {
            let page = page.into_model().map_err(|e| self.map_error(e, "list"))?;
            for item in page.value {
                let Some(version) = item
                    .id
                    .as_deref()
                    .and_then(|id| version_of(id, "secrets", name))
                else {
                    continue;
                };
                let attrs = item.attributes.unwrap_or_default();
                out.push(VersionItem {
                    version,
                    enabled: attrs.enabled.unwrap_or(true),
                    created: unix(attrs.created),
                    updated: unix(attrs.updated),
                });
            }
            if page.next_link.as_deref().is_none_or(str::is_empty) {
                break;
            }
        }
        Ok(out)
    }

    pub(super) async fn certificate_once(
        &self,
        name: &SecretName,
        version: Option<&VersionId>,
        fresh: bool,
    ) -> Result<CertificateBundle, VaultError> {
        let (client, _) = self.object_clients(fresh)?;
        let options = CertificateClientGetCertificateOptions {
            certificate_version: version.map(|v| v.as_str().to_string()),
            method_options: Self::context(fresh),
        };
        let cert = client
            .get_certificate(name.as_str(), Some(options))
            .await
            .map_err(|e| self.map_error(e, "certificates/get"))?
            .into_model()
            .map_err(|e| self.map_error(e, "certificates/get"))?;
        let id = cert.id.unwrap_or_default();
        let version = version_of(&id, "certificates", name).ok_or(VaultError::NotFound)?;
        let attrs = cert.attributes.unwrap_or_default();
        Ok(CertificateBundle {
            name: name.clone(),
            version,
            id,
            kid: cert.kid,
            sid: cert.sid,
            x5t: cert.x509_thumbprint.unwrap_or_default(),
            cer: cert
                .cer
                .ok_or_else(|| VaultError::BadResponse("the certificate has no cer".into()))?,
            enabled: attrs.enabled.unwrap_or(true),
            created: unix(attrs.created),
            updated: unix(attrs.updated),
            expires: unix(attrs.expires),
            not_before: unix(attrs.not_before),
        })
    }

    pub(super) async fn key_once(
        &self,
        name: &SecretName,
        version: Option<&VersionId>,
        fresh: bool,
    ) -> Result<KeyBundle, VaultError> {
        let (_, client) = self.object_clients(fresh)?;
        let options = KeyClientGetKeyOptions {
            key_version: version.map(|v| v.as_str().to_string()),
            method_options: Self::context(fresh),
        };
        let key = client
            .get_key(name.as_str(), Some(options))
            .await
            .map_err(|e| self.map_error(e, "keys/get"))?
            .into_model()
            .map_err(|e| self.map_error(e, "keys/get"))?;
        let jwk = key
            .key
            .ok_or_else(|| VaultError::BadResponse("the key has no JWK".into()))?;
        let kid = jwk.kid.clone().unwrap_or_default();
        let version = version_of(&kid, "keys", name).ok_or(VaultError::NotFound)?;
        let attrs = key.attributes.unwrap_or_default();
        Ok(KeyBundle {
            name: name.clone(),
            version,
            jwk: PublicJwk {
                kid: jwk.kid,
                kty: jwk.kty.map(|k| k.to_string()).unwrap_or_default(),
                key_ops: jwk.key_ops.unwrap_or_default(),
                crv: jwk.crv.map(|c| c.to_string()),
                n: jwk.n,
                e: jwk.e,
                x: jwk.x,
                y: jwk.y,
            },
            enabled: attrs.enabled.unwrap_or(true),
            created: unix(attrs.created),
            updated: unix(attrs.updated),
        })
    }

    pub(super) async fn list_keys_once(&self, fresh: bool) -> Result<Vec<SecretName>, VaultError> {
        let (_, client) = self.object_clients(fresh)?;
        let options = KeyClientListKeyPropertiesOptions {
            maxresults: Some(25),
            method_options: azure_core::http::pager::PagerOptions {
                context: Self::context(fresh).context,
                ..Default::default()
            },
        };
        let mut pages = client
            .list_key_properties(Some(options))
            .map_err(|e| self.map_error(e, "keys/list"))?
            .into_pages();
        let mut out = Vec::new();
        while let Some(page) = pages
            .try_next()
            .await
            .map_err(|e| self.map_error(e, "keys/list"))?
        {
            let page = page
                .into_model()
                .map_err(|e| self.map_error(e, "keys/list"))?;
            out.extend(page.value.into_iter().filter_map(|item| {
                item.kid
                    .as_deref()
                    .and_then(|k| k.rsplit('/').next())
                    .and_then(SecretName::parse)
            }));
            if page.next_link.as_deref().is_none_or(str::is_empty) {
                break;
            }
        }
        Ok(out)
    }
}

fn build(
    url: &str,
    credential: &Arc<dyn TokenCredential>,
    transport: &Transport,
    verify: bool,
) -> Result<(CertificateClient, KeyClient), SetupError> {
    let certs = CertificateClient::new(
        url,
        Arc::clone(credential),
        Some(CertificateClientOptions {
            client_options: client_options(transport),
            verify_challenge_resource: Some(verify),
            ..Default::default()
        }),
    )
    .map_err(|e| SetupError::ObjectClient {
        kind: "certificates",
        url: url.to_string(),
        source: Box::new(e),
    })?;
    let keys = KeyClient::new(
        url,
        Arc::clone(credential),
        Some(KeyClientOptions {
            client_options: client_options(transport),
            verify_challenge_resource: Some(verify),
            ..Default::default()
        }),
    )
    .map_err(|e| SetupError::ObjectClient {
        kind: "keys",
        url: url.to_string(),
        source: Box::new(e),
    })?;
    Ok((certs, keys))
}
