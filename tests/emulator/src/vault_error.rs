//! The data plane's one error: status, code, message and inner code, in Key Vault's words.

/// A Key Vault error: status, `error.code`, `error.message`, `error.innererror.code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VaultError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub inner: Option<&'static str>,
}

impl VaultError {
    pub(crate) fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        VaultError {
            status,
            code,
            message: message.into(),
            inner: None,
        }
    }

    pub(crate) fn with_inner(mut self, inner: &'static str) -> Self {
        self.inner = Some(inner);
        self
    }

    pub(crate) fn bad_parameter(message: impl Into<String>) -> Self {
        VaultError::new(400, "BadParameter", message)
    }

    pub(crate) fn not_found(name: &str, version: Option<&str>) -> Self {
        let id = match version {
            Some(v) => format!("{name}/{v}"),
            None => name.to_string(),
        };
        VaultError::new(
            404,
            "SecretNotFound",
            format!(
                "A secret with (name/id) {id} was not found in this key vault. If you recently deleted this \
                 secret you may be able to recover it using the correct recovery command. For help resolving \
                 this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
            ),
        )
    }

    pub(crate) fn deleted_not_found(name: &str) -> Self {
        VaultError::new(
            404,
            "SecretNotFound",
            format!("Deleted Secret not found: {name}"),
        )
    }

    pub(crate) fn disabled(operation: &str) -> Self {
        VaultError::new(
            403,
            "Forbidden",
            format!("Operation {operation} is not allowed on a disabled secret."),
        )
        .with_inner("SecretDisabled")
    }

    pub(crate) fn deleted_conflict(name: &str) -> Self {
        VaultError::new(
            409,
            "Conflict",
            format!(
                "Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; \
                 in this state, the secret can only be recovered or purged."
            ),
        )
        .with_inner("ObjectIsDeletedButRecoverable")
    }

    /// Restoring a backup of `id` (the latest version's id) into a vault where the name is taken,
    /// live or soft-deleted. Key Vault's text.
    pub(crate) fn restore_conflict(id: &str) -> Self {
        VaultError::new(
            409,
            "Conflict",
            format!(
                "There was a conflict restoring the secret '{id}'. This can happen if either: a second secret \
                 with the same name was created after the first secret was deleted; thus trying to restore a \
                 secret whose name is already in use. To fix this, rename the second secret to something else \
                 so that the restore works. The second probable cause of this exception is when multiple \
                 operations are performed in parallel against the secret. To avoid this error, perform \
                 operations against a secret in a sequential manner."
            ),
        )
    }

    pub(crate) fn invalid_name(name: &str) -> Self {
        VaultError::bad_parameter(format!("The request URI contains an invalid name: {name}"))
    }
}
