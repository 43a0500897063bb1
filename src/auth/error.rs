//! Why an identity could not be set up or could not obtain a token: what failed, and what to check.

use std::time::Duration;

use crate::config::{ENV_CLIENT_ID, ENV_CLIENT_SECRET, ENV_FEDERATED_TOKEN_FILE, ENV_TENANT_ID};

use super::{TokenFailure, CLI_SIGN_IN_EXPIRED};

/// A setting an identity mode cannot do without.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Required {
    /// `--tenant-id`, `-o tenant_id`, `tenant_id` or `AZURE_TENANT_ID`.
    TenantId,
    /// `--client-id`, `-o client_id`, `client_id` or `AZURE_CLIENT_ID`.
    ClientId,
}

impl Required {
    /// How the user sets it: the flag, then the environment variable.
    fn how(self) -> (&'static str, &'static str) {
        match self {
            Required::TenantId => ("--tenant-id", ENV_TENANT_ID),
            Required::ClientId => ("--client-id", ENV_CLIENT_ID),
        }
    }
}

/// Why the configured identity cannot be used, or gave no token.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("--auth client-secret needs {ENV_CLIENT_SECRET} in the environment (it is never taken as a flag, so it stays out of the process list)")]
    NoClientSecret,
    #[error("--auth {mode} needs {} or {}", .setting.how().0, .setting.how().1)]
    Missing {
        mode: &'static str,
        setting: Required,
    },
    #[error("--auth workload-identity needs {ENV_FEDERATED_TOKEN_FILE}; check that the pod has the label azure.workload.identity/use: \"true\" and a service account annotated with azure.workload.identity/client-id")]
    NoFederatedTokenFile,
    #[error("Azure Arc managed identity is system-assigned only, but a user-assigned client id ({client_id}) was given; remove --client-id/AZURE_CLIENT_ID/client_id")]
    ArcUserAssigned { client_id: String },
    #[error("cannot set up the Azure Arc identity client: {0}")]
    ArcClient(#[source] reqwest::Error),
    /// The SDK refused to build the credential (`what` names which).
    #[error("cannot set up {what}: {source}")]
    Credential {
        what: &'static str,
        #[source]
        source: Box<azure_core::Error>,
    },
    /// The token endpoint (or the Azure CLI) gave no token; the advice
    /// follows from how the failure was classified where it happened.
    #[error("cannot obtain an access token: {}{}", token_text(.failure), token_advice(.failure, *.sign_in_expired))]
    Token {
        failure: TokenFailure,
        sign_in_expired: bool,
    },
    #[error("cannot obtain an access token: no answer within {} s; check network access to the token endpoint (login.microsoftonline.com, or the managed identity endpoint)", .0.as_secs())]
    TokenTimeout(Duration),
}

fn token_text(f: &TokenFailure) -> &str {
    match f {
        TokenFailure::Refused(t) | TokenFailure::Transient(t) | TokenFailure::Other(t) => t,
    }
}

fn token_advice(f: &TokenFailure, sign_in_expired: bool) -> &'static str {
    if sign_in_expired {
        return CLI_SIGN_IN_EXPIRED;
    }
    match f {
        TokenFailure::Refused(_) => "; the identity was refused: check that the app registration or managed identity still exists and that its client secret or federated credential is valid",
        TokenFailure::Transient(_) => "; the token endpoint is unreachable or failing: check network access to it, then try again",
        TokenFailure::Other(_) => "",
    }
}

impl AuthError {
    /// A token failure, classified once where it happened.
    pub fn token(err: &azure_core::Error) -> AuthError {
        let failure = super::classify_token_error(err);
        let sign_in_expired = super::cli_sign_in_expired(&token_text(&failure).to_lowercase());
        AuthError::Token {
            failure,
            sign_in_expired,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_settings_name_the_flag_and_the_variable() {
        let e = AuthError::Missing {
            mode: "workload-identity",
            setting: Required::TenantId,
        };
        assert_eq!(
            e.to_string(),
            "--auth workload-identity needs --tenant-id or AZURE_TENANT_ID"
        );
        let e = AuthError::Missing {
            mode: "client-secret",
            setting: Required::ClientId,
        };
        assert_eq!(
            e.to_string(),
            "--auth client-secret needs --client-id or AZURE_CLIENT_ID"
        );
        assert!(AuthError::NoClientSecret
            .to_string()
            .contains("AZURE_CLIENT_SECRET in the environment"));
    }

    #[test]
    fn token_failures_carry_advice_by_class() {
        let refused = AuthError::Token {
            failure: TokenFailure::Refused("AADSTS7000215: invalid client secret".into()),
            sign_in_expired: false,
        };
        let shown = refused.to_string();
        assert!(
            shown.starts_with("cannot obtain an access token: AADSTS7000215"),
            "{shown}"
        );
        assert!(shown.contains("still exists"), "{shown}");
        let transient = AuthError::Token {
            failure: TokenFailure::Transient("503".into()),
            sign_in_expired: false,
        };
        assert!(transient.to_string().contains("try again"));
        let expired = AuthError::Token {
            failure: TokenFailure::Other("AADSTS700082".into()),
            sign_in_expired: true,
        };
        assert!(expired.to_string().ends_with(CLI_SIGN_IN_EXPIRED));
        let late = AuthError::TokenTimeout(Duration::from_secs(30));
        assert!(late.to_string().contains("within 30 s"));
        let arc = AuthError::ArcUserAssigned {
            client_id: "abc".into(),
        };
        assert!(arc.to_string().contains("remove --client-id"));
    }
}
