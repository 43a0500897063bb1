//! SDK errors into [`VaultError`]s: status codes, token failures and network causes, each with what to check.

use std::time::Duration;

use azure_core::error::ErrorKind;

use super::http::BodyTooLarge;
use super::AzureVault;
use crate::auth::{classify_token_error, ForeignScope, TokenFailure, KEY_VAULT_SCOPES};
use crate::text::one_line;
use crate::vault::{Cause, Detail, VaultError};

impl AzureVault {
    /// Maps an SDK error to a [`VaultError`], and forgets a refused
    /// challenge scope. `operation` is the permission the call needed, for
    /// the 403 message.
    pub(super) fn map_error(&self, err: azure_core::Error, operation: &'static str) -> VaultError {
        if let Some(refused) = find_cause::<ForeignScope>(&err) {
            self.reset_client();
            return VaultError::Auth(Detail::from(format!(
                "the vault host {} asked for an access token for {}, which is not a Key Vault scope; no token was sent (akvfs requests tokens only for {}); check the vault URL, its DNS name and any proxy on the way",
                self.host,
                refused.scope,
                KEY_VAULT_SCOPES.join(", ")
            )));
        }
        map_error(err, operation)
    }
}

/// The first cause of type `T` in an error's chain.
fn find_cause<T: std::error::Error + 'static>(err: &azure_core::Error) -> Option<&T> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        if let Some(inner) = e.downcast_ref::<azure_core::Error>() {
            if let Some(t) = inner.downcast_ref::<T>() {
                return Some(t);
            }
        }
        cur = e.source();
    }
    None
}

/// Maps an SDK error to a [`VaultError`]. `operation` is the permission the
/// call needed, for the 403 message.
fn map_error(err: azure_core::Error, operation: &'static str) -> VaultError {
    if let Some(big) = find_cause::<BodyTooLarge>(&err) {
        return VaultError::BadResponse(big.to_string());
    }
    match err.kind() {
        ErrorKind::HttpResponse {
            status,
            error_code,
            raw_response,
        } => {
            let status = u16::from(*status);
            let code = error_code.clone().unwrap_or_default();
            let body = raw_response
                .as_ref()
                .map(|r| String::from_utf8_lossy(r.body()).into_owned())
                .unwrap_or_default();
            let inner = serde_json::from_str::<serde_json::Value>(&body).ok();
            let message = inner
                .as_ref()
                .and_then(|v| v.pointer("/error/message"))
                .and_then(|m| m.as_str())
                .unwrap_or("")
                // RBAC denials span several lines; logs and errors are one line.
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let inner_code = inner
                .as_ref()
                .and_then(|v| v.pointer("/error/innererror/code"))
                .and_then(|m| m.as_str())
                .unwrap_or("")
                .to_string();
            match status {
                404 => VaultError::NotFound,
                403 if inner_code == "SecretDisabled" || code == "SecretDisabled" => {
                    VaultError::Disabled
                }
                403 => VaultError::Forbidden {
                    operation,
                    detail: match (inner_code.is_empty(), message.is_empty()) {
                        (true, true) => code,
                        (true, false) => message,
                        (false, true) => inner_code,
                        (false, false) => format!("{inner_code}: {message}"),
                    },
                },
                // After the SDK's own retry with a new challenge; the
                // caller retries once more with a newly issued token
                // before it takes this as final.
                401 => VaultError::IdentityRejected(format!(
                    "the vault refused a newly issued access token (401 {code}): {message}"
                )),
                429 => VaultError::Throttled {
                    retry_after: retry_after(raw_response.as_deref()),
                },
                408 | 500..=599 => {
                    VaultError::Unavailable(format!("HTTP {status} {code} {message}").into())
                }
                _ => VaultError::BadResponse(format!("HTTP {status} {code}: {message}")),
            }
        }
        ErrorKind::Credential => {
            // An expired Azure CLI sign-in gets its remedy whatever its class.
            let hint = |why: String| {
                let kind = cause_of(None, &why);
                if kind == Cause::CliSignInExpired {
                    Detail::new(kind, format!("{why}{}", crate::auth::CLI_SIGN_IN_EXPIRED))
                } else {
                    Detail::new(kind, why)
                }
            };
            match classify_token_error(&err) {
                TokenFailure::Refused(why) => VaultError::IdentityRejected(hint(why).text),
                TokenFailure::Transient(why) => VaultError::Unavailable(hint(why)),
                TokenFailure::Other(why) => VaultError::Auth(hint(why)),
            }
        }
        ErrorKind::Connection | ErrorKind::Io => {
            let text = one_line(&err);
            VaultError::Unavailable(Detail::new(cause_of(Some(&err), &text), text))
        }
        _ => {
            let text = one_line(&err);
            if let Some(scope) =
                challenge_scope(&text).filter(|s| !crate::auth::is_key_vault_scope(s))
            {
                VaultError::Auth(Detail::from(format!(
                    "the vault's authentication challenge names {scope}, which is not a Key Vault scope; no token was sent; check the vault URL, its DNS name and any proxy on the way"
                )))
            } else if text.contains("challenge") || text.contains("resource") {
                VaultError::Auth(Detail::from(format!(
                    "{text}; for a private endpoint or the emulator pass --disable-challenge-resource-verification"
                )))
            } else {
                VaultError::Unavailable(Detail::new(cause_of(Some(&err), &text), text))
            }
        }
    }
}

/// What a failure to reach or authenticate to the vault points at: from
/// the error's chain where it carries a typed I/O error, else from the text
/// the SDK, the resolver, the TLS library or the Azure CLI gave it.
fn cause_of(err: Option<&azure_core::Error>, text: &str) -> Cause {
    let lower = text.to_lowercase();
    if crate::auth::cli_sign_in_expired(&lower) {
        return Cause::CliSignInExpired;
    }
    if lower.contains("az not found") {
        return Cause::CliMissing;
    }
    if lower.contains("az login") {
        return Cause::CliSignIn;
    }
    if lower.contains("dns") || lower.contains("resolve") || lower.contains("name or service") {
        return Cause::Dns;
    }
    if lower.contains("certificate") || lower.contains("tls") || lower.contains("unknownissuer") {
        return Cause::Tls;
    }
    let refused = err.and_then(find_cause::<std::io::Error>).is_some_and(|e| {
        matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::HostUnreachable
                | std::io::ErrorKind::NetworkUnreachable
        )
    });
    if refused || lower.contains("connection refused") || lower.contains("connect") {
        return Cause::Connect;
    }
    Cause::Other
}

/// The scope quoted in the SDK's challenge-verification error.
fn challenge_scope(text: &str) -> Option<&str> {
    let rest = text.split("challenge resource '").nth(1)?;
    rest.split('\'').next()
}

fn retry_after(raw: Option<&azure_core::http::RawResponse>) -> Option<Duration> {
    let headers = raw?.headers();
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(v) =
            headers.get_optional_str(&azure_core::http::headers::HeaderName::from_static(name))
        {
            if let Ok(ms) = v.trim().parse::<u64>() {
                return Some(Duration::from_millis(ms));
            }
        }
    }
    headers
        .get_optional_str(&azure_core::http::headers::HeaderName::from_static(
            "retry-after",
        ))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verified_challenge_for_another_resource_is_named_not_excused() {
        let text = "challenge resource 'https://management.azure.com/.default' doesn't match the requested domain 'myvault.vault.azure.net'. Set verify_challenge_resource";
        assert_eq!(
            challenge_scope(text),
            Some("https://management.azure.com/.default")
        );
        let err = map_error(
            azure_core::Error::with_message(ErrorKind::Other, text),
            "get",
        );
        let shown = err.to_string();
        assert!(shown.contains("not a Key Vault scope"), "{shown}");
        assert!(!shown.contains("--disable-challenge"), "{shown}");
        // A Key Vault scope on a custom host name is the private-endpoint case.
        let text = "challenge resource 'https://vault.azure.net/.default' doesn't match the requested domain 'kv.corp.example'";
        let shown = map_error(
            azure_core::Error::with_message(ErrorKind::Other, text),
            "get",
        )
        .to_string();
        assert!(
            shown.contains("--disable-challenge-resource-verification"),
            "{shown}"
        );
    }

    #[test]
    fn bodies_over_the_limit_are_bad_responses() {
        let err = azure_core::Error::new(ErrorKind::Io, BodyTooLarge { limit: 10 });
        assert!(matches!(map_error(err, "get"), VaultError::BadResponse(_)));
    }
}
