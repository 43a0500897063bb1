//! The non-secret claims of an access token, for `akvfs check`.

use super::*;

/// Non-secret claims of an access token, for `akvfs check`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct TokenClaims {
    pub tid: Option<String>,
    pub oid: Option<String>,
    pub appid: Option<String>,
    pub azp: Option<String>,
    pub upn: Option<String>,
    pub unique_name: Option<String>,
    pub xms_mirid: Option<String>,
}

/// Obtains a token and returns its identity claims and lifetime. The token
/// itself is dropped, never shown.
pub async fn whoami(
    credential: &Arc<dyn TokenCredential>,
) -> Result<(TokenClaims, time::OffsetDateTime), AuthError> {
    let token = credential
        .get_token(&[VAULT_SCOPE], None)
        .await
        .map_err(|e| AuthError::token(&e))?;
    let claims = decode_claims(token.token.secret()).unwrap_or_default();
    Ok((claims, token.expires_on))
}

fn decode_claims(jwt: &str) -> Option<TokenClaims> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}
