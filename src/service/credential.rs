//! Counts the access tokens a mount's credential obtains, for metrics and readiness.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;

use crate::metrics::MountMetrics;
use crate::sync::lock;

/// Counts the access tokens a credential obtains (a token with a new expiry
/// is a new token) and records that one was obtained, for metrics and
/// readiness.
pub struct CountingCredential {
    inner: Arc<dyn TokenCredential>,
    metrics: Arc<MountMetrics>,
    last_expiry: std::sync::Mutex<Option<time::OffsetDateTime>>,
}

impl CountingCredential {
    pub fn wrap(
        inner: Arc<dyn TokenCredential>,
        metrics: Arc<MountMetrics>,
    ) -> Arc<dyn TokenCredential> {
        Arc::new(CountingCredential {
            inner,
            metrics,
            last_expiry: std::sync::Mutex::new(None),
        })
    }
}

impl std::fmt::Debug for CountingCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CountingCredential")
    }
}

#[async_trait::async_trait]
impl TokenCredential for CountingCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        let token = self.inner.get_token(scopes, options).await?;
        let mut last = lock(&self.last_expiry);
        if *last != Some(token.expires_on) {
            *last = Some(token.expires_on);
            self.metrics
                .token_refreshes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.metrics
                .token_ok
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(token)
    }
}
