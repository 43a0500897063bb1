//! A [`Vault`] decorator that counts and times every upstream call for the
//! metrics: one GET is one call; each list page is one call.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{CertificateBundle, KeyBundle, VersionItem};
use super::{ListPacer, Vault, VaultError};
use crate::secret::{Secret, SecretName, SecretSummary, VersionId};
use crate::sync::lock;

/// Where each upstream call is reported (a mount's metrics).
pub trait CallRecorder: Send + Sync {
    /// One call: its operation (`get`, `list`), status label and duration.
    fn upstream(&self, operation: &'static str, status: &'static str, took: Option<Duration>);
}

/// The status label of an upstream call.
pub fn status_label(r: &Result<(), &VaultError>) -> &'static str {
    match r {
        Ok(()) => "200",
        Err(VaultError::NotFound) => "404",
        Err(VaultError::Disabled) | Err(VaultError::Forbidden { .. }) => "403",
        Err(VaultError::Auth(_)) | Err(VaultError::IdentityRejected(_)) => "401",
        Err(VaultError::Throttled { .. }) => "429",
        Err(VaultError::Timeout(_)) => "timeout",
        Err(VaultError::Unavailable(_)) => "unavailable",
        Err(VaultError::BadResponse(_)) => "bad_response",
    }
}

pub struct MeteredVault {
    inner: Arc<dyn Vault>,
    metrics: Arc<dyn CallRecorder>,
}

impl MeteredVault {
    pub fn new(inner: Arc<dyn Vault>, metrics: Arc<dyn CallRecorder>) -> MeteredVault {
        MeteredVault { inner, metrics }
    }
}

/// Wraps the caller's pacer: times each page from its request to the next.
struct PageTimer<'a> {
    inner: &'a dyn ListPacer,
    metrics: &'a dyn CallRecorder,
    pages: AtomicU32,
    started: Mutex<Option<Instant>>,
}

#[async_trait]
impl ListPacer for PageTimer<'_> {
    async fn before_page(&self) {
        self.inner.before_page().await;
        let now = Instant::now();
        let previous = lock(&self.started).replace(now);
        if let Some(t) = previous {
            self.metrics.upstream("list", "200", Some(now - t));
        }
        self.pages.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl Vault for MeteredVault {
    fn url(&self) -> &str {
        self.inner.url()
    }

    async fn get(
        &self,
        name: &SecretName,
        version: Option<&VersionId>,
    ) -> Result<Secret, VaultError> {
        let start = Instant::now();
        let r = self.inner.get(name, version).await;
        self.metrics.upstream(
            "get",
            status_label(&r.as_ref().map(|_| ())),
            Some(start.elapsed()),
        );
        r
    }

    async fn versions(&self, name: &SecretName) -> Result<Vec<VersionItem>, VaultError> {
        let start = Instant::now();
        let r = self.inner.versions(name).await;
        let status = status_label(&r.as_ref().map(|_| ()));
        self.metrics
            .upstream("versions", status, Some(start.elapsed()));
        r
    }

    async fn certificate(
        &self,
        name: &SecretName,
        version: Option<&VersionId>,
    ) -> Result<CertificateBundle, VaultError> {
        let start = Instant::now();
        let r = self.inner.certificate(name, version).await;
        let status = status_label(&r.as_ref().map(|_| ()));
        self.metrics
            .upstream("certificate", status, Some(start.elapsed()));
        r
    }

    async fn key(
        &self,
        name: &SecretName,
        version: Option<&VersionId>,
    ) -> Result<KeyBundle, VaultError> {
        let start = Instant::now();
        let r = self.inner.key(name, version).await;
        let status = status_label(&r.as_ref().map(|_| ()));
        self.metrics.upstream("key", status, Some(start.elapsed()));
        r
    }

    async fn list_keys(&self) -> Result<Vec<SecretName>, VaultError> {
        let start = Instant::now();
        let r = self.inner.list_keys().await;
        let status = status_label(&r.as_ref().map(|_| ()));
        self.metrics
            .upstream("list_keys", status, Some(start.elapsed()));
        r
    }

    async fn list(&self, pacer: &dyn ListPacer) -> Result<Vec<SecretSummary>, VaultError> {
        let timer = PageTimer {
            inner: pacer,
            metrics: &*self.metrics,
            pages: AtomicU32::new(0),
            started: Mutex::new(None),
        };
        let r = self.inner.list(&timer).await;
        // The last page requested ends here, with the listing's outcome.
        let last = lock(&timer.started).take();
        if let Some(t) = last {
            self.metrics.upstream(
                "list",
                status_label(&r.as_ref().map(|_| ())),
                Some(t.elapsed()),
            );
        }
        r
    }
}
