//! Test controls for certificates and keys, shared by the admin API and [`crate::Emulator`].
//!
//! Test controls for certificates and keys, shared by the admin API and [`crate::Emulator`]:
//! add versions (rotation), enable or disable them, and set an identity's certificate and key
//! permissions.

use crate::certgen::{ChainSpec, KeySpec, TestChain};
use crate::config::{ObjectPermissions, SeedCertVersion, SeedCertificate, SeedKey, SeedKeyVersion};
use crate::emulator::{Emulator, EmulatorError};
use crate::state::Shared;
use serde_json::{json, Value};

impl Shared {
    /// Adds a certificate version (with its key and secret versions); returns the version id.
    pub(crate) fn add_certificate_version(
        &self,
        name: &str,
        v: &SeedCertVersion,
    ) -> Result<String, String> {
        let cert = SeedCertificate {
            name: name.to_string(),
            versions: Vec::new(),
            ..Default::default()
        };
        let now = crate::util::now_unix();
        crate::objseed::add_cert_version(&mut self.lock(), &cert, v, now)
    }

    /// Adds a key version; returns the version id.
    pub(crate) fn add_key_version(&self, name: &str, v: &SeedKeyVersion) -> Result<String, String> {
        let key = SeedKey {
            name: name.to_string(),
            versions: Vec::new(),
            ..Default::default()
        };
        let now = crate::util::now_unix();
        crate::objseed::add_key_version(&mut self.lock(), &key, v, now)
    }

    /// Soft-deletes a key (every version), as `DELETE /keys/{name}` does.
    pub(crate) fn delete_key(&self, name: &str) -> Result<(), String> {
        let now = crate::util::now_unix();
        self.lock()
            .objects
            .keys
            .delete(name, now)
            .map(|_| ())
            .ok_or_else(|| format!("no key {name}"))
    }

    /// Enables or disables a certificate version (None: the latest) with its key and secret.
    pub(crate) fn set_certificate_enabled(
        &self,
        name: &str,
        version: Option<&str>,
        enabled: bool,
    ) -> Result<(), String> {
        let mut st = self.lock();
        let v = st
            .objects
            .certs
            .get_mut(name, version)
            .ok_or_else(|| format!("no certificate {name}"))?;
        v.attrs.enabled = enabled;
        let id = v.id.clone();
        if let Some(k) = st.objects.keys.get_mut(name, Some(&id)) {
            k.attrs.enabled = enabled;
        }
        let update = crate::secret::AttributeUpdate {
            enabled: Some(enabled),
            ..Default::default()
        };
        let now = crate::util::now_unix();
        let _ = st.store.update(name, Some(&id), update, now);
        Ok(())
    }

    /// Sets an identity's certificate and key permissions and denied names (None: unchanged).
    pub(crate) fn set_object_permissions(
        &self,
        client_id: &str,
        certificates: Option<ObjectPermissions>,
        keys: Option<ObjectPermissions>,
        denied_certificates: Option<Vec<String>>,
        denied_keys: Option<Vec<String>>,
    ) -> Result<(), String> {
        let mut st = self.lock();
        let identity = st
            .identities
            .get_mut(&client_id.to_ascii_lowercase())
            .ok_or_else(|| format!("no identity {client_id}"))?;
        if let Some(p) = certificates {
            identity.certificates = p;
        }
        if let Some(p) = keys {
            identity.keys = p;
        }
        if let Some(d) = denied_certificates {
            identity.denied_certificates = d;
        }
        if let Some(d) = denied_keys {
            identity.denied_keys = d;
        }
        Ok(())
    }
}

/// A generated test chain as JSON (PEM certificates and key, PKCS#12 and PEM bundles).
pub(crate) fn chain_json(
    kty: &str,
    key_size: Option<u64>,
    crv: Option<&str>,
    cn: &str,
) -> Result<Value, String> {
    let key = KeySpec::parse(kty, key_size, crv)?;
    let chain = ChainSpec {
        key,
        leaf_cn: cn.to_string(),
    }
    .generate()?;
    Ok(json!({
        "root": TestChain::cert_pem(&chain.root),
        "intermediate": TestChain::cert_pem(&chain.intermediate),
        "leaf": TestChain::cert_pem(&chain.leaf),
        "key": crate::certgen::pem_encode(Some(&chain.leaf_key), &[]),
        "pfx_complete": chain.pfx_base64(&chain.complete())?,
        "pfx_incomplete": chain.pfx_base64(&chain.incomplete())?,
        "pem_complete": chain.pem(&chain.complete()),
        "pem_incomplete": chain.pem(&chain.incomplete()),
    }))
}

impl Emulator {
    /// Adds a certificate version (a rotation when the certificate exists): its key and backing
    /// secret get versions with the same id. Returns the version id.
    pub fn add_certificate_version(
        &self,
        name: &str,
        version: &SeedCertVersion,
    ) -> Result<String, EmulatorError> {
        self.shared()
            .add_certificate_version(name, version)
            .map_err(EmulatorError::Refused)
    }

    /// Adds a key version; returns the version id.
    pub fn add_key_version(
        &self,
        name: &str,
        version: &SeedKeyVersion,
    ) -> Result<String, EmulatorError> {
        self.shared()
            .add_key_version(name, version)
            .map_err(EmulatorError::Refused)
    }

    /// Soft-deletes a key (every version).
    pub fn delete_key(&self, name: &str) -> Result<(), EmulatorError> {
        self.shared()
            .delete_key(name)
            .map_err(EmulatorError::Refused)
    }

    /// Enables or disables a certificate version (None: the latest), its key and its secret.
    pub fn set_certificate_enabled(
        &self,
        name: &str,
        version: Option<&str>,
        enabled: bool,
    ) -> Result<(), EmulatorError> {
        self.shared()
            .set_certificate_enabled(name, version, enabled)
            .map_err(EmulatorError::Refused)
    }

    /// Sets an identity's certificate and key permissions (None leaves one unchanged).
    pub fn set_object_permissions(
        &self,
        client_id: &str,
        certificates: Option<ObjectPermissions>,
        keys: Option<ObjectPermissions>,
    ) -> Result<(), EmulatorError> {
        self.shared()
            .set_object_permissions(client_id, certificates, keys, None, None)
            .map_err(EmulatorError::Refused)
    }

    /// Denies (or allows again) one certificate and one key name to an identity; `None` leaves
    /// that list unchanged. The lists replace the previous ones.
    pub fn deny_objects(
        &self,
        client_id: &str,
        certificates: Option<Vec<String>>,
        keys: Option<Vec<String>>,
    ) -> Result<(), EmulatorError> {
        self.shared()
            .set_object_permissions(client_id, None, None, certificates, keys)
            .map_err(EmulatorError::Refused)
    }
}
