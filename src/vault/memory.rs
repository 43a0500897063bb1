//! An in-memory vault with call counters and fault injection, for tests and
//! benchmarks that exercise the cache and filesystem without a network.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::{CertificateBundle, KeyBundle, ListPacer, Vault, VaultError, VersionItem};

#[path = "memory_objects.rs"]
mod objects;
use crate::secret::{Secret, SecretBytes, SecretName, SecretProps, SecretSummary, VersionId};
use crate::sync::lock;

#[derive(Clone)]
struct Stored {
    versions: Vec<(VersionId, Vec<u8>, i64)>,
    enabled: bool,
    content_type: Option<String>,
    /// Versions disabled on their own (the latest one's state is `enabled`).
    disabled_versions: BTreeSet<VersionId>,
    expires: Option<i64>,
    not_before: Option<i64>,
    /// Backs a certificate (`managed: true` in listings).
    managed: bool,
}

/// An in-memory [`Vault`].
#[derive(Default)]
pub struct MemoryVault {
    secrets: Mutex<BTreeMap<SecretName, Stored>>,
    fault: Mutex<Option<VaultError>>,
    get_fault: Mutex<Option<VaultError>>,
    /// Secrets the identity may list but not get (a per-secret deny).
    denied: Mutex<BTreeSet<SecretName>>,
    panic_on_get: std::sync::atomic::AtomicBool,
    delay: Mutex<Option<Duration>>,
    /// Calls that reach [`MemoryVault::before_call`] (GETs, list pages, object reads).
    calls: AtomicU64,
    /// The call (1-based, counted in `calls`) from which every call fails; 0: none.
    fail_at: AtomicU64,
    next_version: AtomicU64,
    objects: Mutex<objects::Store>,
    /// GET calls made.
    pub gets: AtomicU64,
    /// List pages fetched.
    pub list_pages: AtomicU64,
    /// The URL it answers as (empty: `memory://test`).
    url: String,
}

impl MemoryVault {
    pub fn new() -> MemoryVault {
        MemoryVault::default()
    }

    /// A vault answering as `url`, to tell several apart.
    pub fn with_url(url: &str) -> MemoryVault {
        MemoryVault {
            url: url.to_string(),
            ..MemoryVault::default()
        }
    }

    /// Adds a new version and returns its id.
    pub fn put(&self, name: &str, value: &[u8]) -> VersionId {
        let name = SecretName::parse(name).expect("test secret name must be valid");
        let n = self.next_version.fetch_add(1, Ordering::SeqCst);
        let version = VersionId::new(&format!("{n:032x}"));
        let mut map = lock(&self.secrets);
        let entry = map.entry(name).or_insert(Stored {
            versions: Vec::new(),
            enabled: true,
            content_type: None,
            disabled_versions: BTreeSet::new(),
            expires: None,
            not_before: None,
            managed: false,
        });
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        entry.versions.push((version.clone(), value.to_vec(), now));
        version
    }

    pub fn set_enabled(&self, name: &str, enabled: bool) {
        let mut map = lock(&self.secrets);
        if let Some(s) = map.get_mut(name_key(name).as_ref().expect("valid name")) {
            s.enabled = enabled;
        }
    }

    /// Enables or disables one version. Disabling the latest version is what
    /// the list reports as the secret being disabled.
    pub fn set_version_enabled(&self, name: &str, version: &VersionId, enabled: bool) {
        let mut map = lock(&self.secrets);
        if let Some(s) = map.get_mut(name_key(name).as_ref().expect("valid name")) {
            if enabled {
                s.disabled_versions.remove(version);
            } else {
                s.disabled_versions.insert(version.clone());
            }
        }
    }

    /// Sets `exp` and `nbf` (Unix seconds) of the secret.
    pub fn set_validity(&self, name: &str, expires: Option<i64>, not_before: Option<i64>) {
        let mut map = lock(&self.secrets);
        if let Some(s) = map.get_mut(name_key(name).as_ref().expect("valid name")) {
            s.expires = expires;
            s.not_before = not_before;
        }
    }

    /// Denies (or allows again) GETs of one secret; it stays listed, as with
    /// a per-secret role assignment removed while `list` is kept.
    pub fn deny(&self, name: &str, denied: bool) {
        let name = name_key(name).expect("valid name");
        let mut set = lock(&self.denied);
        if denied {
            set.insert(name);
        } else {
            set.remove(&name);
        }
    }

    /// Every following GET (not list) fails with `err`; `None` clears it.
    pub fn fail_gets_with(&self, err: Option<VaultError>) {
        *lock(&self.get_fault) = err;
    }

    /// Makes every following GET panic (a bug in the fetch path).
    pub fn panic_on_get(&self, on: bool) {
        self.panic_on_get.store(on, Ordering::SeqCst);
    }

    pub fn delete(&self, name: &str) {
        let mut map = lock(&self.secrets);
        map.remove(name_key(name).as_ref().expect("valid name"));
    }

    /// Sets the `updated` time of the latest version (Unix seconds).
    pub fn set_updated(&self, name: &str, updated: i64) {
        let mut map = lock(&self.secrets);
        if let Some(v) = map
            .get_mut(name_key(name).as_ref().expect("valid name"))
            .and_then(|s| s.versions.last_mut())
        {
            v.2 = updated;
        }
    }

    /// Every following call fails with `err` until [`MemoryVault::clear_fault`].
    pub fn fail_with(&self, err: VaultError) {
        *lock(&self.fault) = Some(err);
    }

    /// The `k`-th call from now and every call after it fail as unavailable,
    /// until [`MemoryVault::clear_fault`].
    pub fn fail_from_call(&self, k: u64) {
        self.fail_at
            .store(self.calls.load(Ordering::SeqCst) + k, Ordering::SeqCst);
    }

    pub fn clear_fault(&self) {
        *lock(&self.fault) = None;
        self.fail_at.store(0, Ordering::SeqCst);
    }

    /// Every following call waits this long first.
    pub fn set_delay(&self, d: Option<Duration>) {
        *lock(&self.delay) = d;
    }

    async fn before_call(&self) -> Result<(), VaultError> {
        let delay = *lock(&self.delay);
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let at = self.fail_at.load(Ordering::SeqCst);
        if at != 0 && n >= at {
            return Err(VaultError::Unavailable("injected failure".into()));
        }
        match lock(&self.fault).clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn name_key(name: &str) -> Option<SecretName> {
    SecretName::parse(name)
}

#[async_trait]
impl Vault for MemoryVault {
    fn url(&self) -> &str {
        if self.url.is_empty() {
            "memory://test"
        } else {
            &self.url
        }
    }

    async fn get(
        &self,
        name: &SecretName,
        version: Option<&VersionId>,
    ) -> Result<Secret, VaultError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.before_call().await?;
        if self.panic_on_get.load(Ordering::SeqCst) {
            panic!("injected panic in the fetch path");
        }
        let get_fault = lock(&self.get_fault).clone();
        if let Some(e) = get_fault {
            return Err(e);
        }
        if lock(&self.denied).contains(name) {
            return Err(VaultError::Forbidden {
                operation: "get",
                detail: "denied by a test".into(),
            });
        }
        let map = lock(&self.secrets);
        let stored = map.get(name).ok_or(VaultError::NotFound)?;
        let found = match version {
            Some(v) => stored.versions.iter().find(|(id, _, _)| id == v),
            None => stored.versions.last(),
        };
        let (id, value, updated) = found.ok_or(VaultError::NotFound)?;
        if !stored.enabled || stored.disabled_versions.contains(id) {
            return Err(VaultError::Disabled);
        }
        Ok(Secret {
            props: SecretProps {
                name: name.clone(),
                version: id.clone(),
                id: format!("memory://test/secrets/{name}/{id}"),
                content_type: stored.content_type.clone(),
                enabled: stored.enabled,
                created: Some(*updated),
                updated: Some(*updated),
                expires: stored.expires,
                not_before: stored.not_before,
                tags: BTreeMap::new(),
                served_at: None,
            },
            value: SecretBytes::from(&value[..]),
        })
    }

    async fn versions(&self, name: &SecretName) -> Result<Vec<VersionItem>, VaultError> {
        self.versions_of(name).await
    }

    async fn certificate(
        &self,
        name: &SecretName,
        version: Option<&VersionId>,
    ) -> Result<CertificateBundle, VaultError> {
        self.certificate_of(name, version).await
    }

    async fn key(
        &self,
        name: &SecretName,
        version: Option<&VersionId>,
    ) -> Result<KeyBundle, VaultError> {
        self.key_of(name, version).await
    }

    async fn list_keys(&self) -> Result<Vec<SecretName>, VaultError> {
        self.key_names().await
    }

    async fn list(&self, pacer: &dyn ListPacer) -> Result<Vec<SecretSummary>, VaultError> {
        let n_pages = {
            let map = lock(&self.secrets);
            map.len().div_ceil(25).max(1)
        };
        for _ in 0..n_pages {
            pacer.before_page().await;
            self.list_pages.fetch_add(1, Ordering::SeqCst);
            self.before_call().await?;
        }
        let map = lock(&self.secrets);
        Ok(map
            .iter()
            .map(|(name, s)| SecretSummary {
                name: name.clone(),
                enabled: s.enabled
                    && !s
                        .versions
                        .last()
                        .is_some_and(|(v, _, _)| s.disabled_versions.contains(v)),
                content_type: s.content_type.clone(),
                updated: s.versions.last().map(|v| v.2),
                expires: None,
                managed: s.managed,
            })
            .collect())
    }
}
