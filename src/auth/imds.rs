//! The SDK's managed identity credential on a VM, with what to check added to its errors.

use super::*;

/// How long a token request to the instance metadata service may take before
/// akvfs logs that it is waiting for it (a vault call waiting on it then fails
/// at `--fetch-timeout` as a timeout; the log line names the real cause).
const IMDS_SLOW_WARNING: std::time::Duration = std::time::Duration::from_secs(1);

/// The SDK's managed identity credential on a VM, where tokens come from the
/// instance metadata service at 169.254.169.254. Adds what to check to its
/// errors and logs when the service is slow to answer.
pub struct ImdsCredential {
    pub(super) inner: Arc<ManagedIdentityCredential>,
    pub(super) client_id: Option<String>,
}

impl std::fmt::Debug for ImdsCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ImdsCredential")
    }
}

impl ImdsCredential {
    fn which(&self) -> String {
        match &self.client_id {
            Some(id) => format!("the user-assigned identity with client id {id}"),
            None => "the system-assigned identity".to_string(),
        }
    }
}

#[async_trait::async_trait]
impl TokenCredential for ImdsCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        let call = self.inner.get_token(scopes, options);
        tokio::pin!(call);
        let result = tokio::select! {
            r = &mut call => r,
            _ = tokio::time::sleep(IMDS_SLOW_WARNING) => {
                tracing::warn!(
                    "the instance metadata service (169.254.169.254) has not answered a token request for {} within {}s; vault calls wait for it; check that this is an Azure VM or scale set and that no firewall or proxy intercepts 169.254.169.254",
                    self.which(),
                    IMDS_SLOW_WARNING.as_secs()
                );
                call.await
            }
        };
        result.map_err(|e| {
            let hint = match self.client_id {
                Some(_) => "check that the VM has this user-assigned identity (az vm identity assign --identities) and that --client-id is its client id",
                None => "check that the VM has a system-assigned identity (az vm identity assign), or give --client-id for a user-assigned one",
            };
            let message = format!(
                "no token for {} from the instance metadata service (169.254.169.254): {e}; {hint}",
                self.which(),
            );
            azure_core::Error::with_error(azure_core::error::ErrorKind::Credential, e, message)
        })
    }
}
