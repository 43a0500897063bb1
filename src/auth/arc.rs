//! Azure Arc-enabled servers' managed identity, which the SDK does not support.

use super::*;

/// Azure Arc's identity variables: `IDENTITY_ENDPOINT` with `IMDS_ENDPOINT`
/// (and no `IDENTITY_HEADER`, which would mean App Service).
pub const ENV_IMDS_ENDPOINT: &str = "IMDS_ENDPOINT";
const ENV_IDENTITY_HEADER: &str = "IDENTITY_HEADER";
/// The directory the Arc agent writes its challenge key files to;
/// `AKVFS_ARC_TOKENS_DIR` replaces it (test setups).
pub const ARC_TOKENS_DIR: &str = "/var/opt/azcmagent/tokens";
pub const ENV_ARC_TOKENS_DIR: &str = "AKVFS_ARC_TOKENS_DIR";
const ARC_API_VERSION: &str = "2020-06-01";
/// The Arc agent's key files are small; anything bigger is not one.
const ARC_MAX_KEY_BYTES: u64 = 4096;

/// Managed identity on an Azure Arc-enabled server, which the SDK's
/// `ManagedIdentityCredential` does not support. The agent answers a first
/// request with 401 and `WWW-Authenticate: Basic realm=<key file>`; the key
/// file is readable only by root and the `himds` group, so presenting its
/// content proves the caller is privileged on this machine. The file must lie
/// in the agent's token directory, end in `.key` and be at most 4 KiB, so a
/// rogue local listener cannot make akvfs send it the content of other files.
/// Tokens are cached until 5 minutes before expiry, as the SDK does.
pub struct ArcCredential {
    endpoint: String,
    tokens_dir: PathBuf,
    http: reqwest::Client,
    /// The last token and the resource it is for.
    cache: tokio::sync::Mutex<Option<(String, azure_core::credentials::AccessToken)>>,
}

impl std::fmt::Debug for ArcCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArcCredential")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

fn arc_error(msg: String) -> azure_core::Error {
    azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, msg)
}

impl ArcCredential {
    /// The Arc credential if the environment is an Arc machine's.
    pub fn from_env(client_id: Option<&str>) -> Result<Option<ArcCredential>, AuthError> {
        let (Some(endpoint), Some(_)) = (env(ENV_IDENTITY_ENDPOINT), env(ENV_IMDS_ENDPOINT)) else {
            return Ok(None);
        };
        if env(ENV_IDENTITY_HEADER).is_some() {
            return Ok(None);
        }
        if let Some(id) = client_id {
            return Err(AuthError::ArcUserAssigned {
                client_id: id.to_string(),
            });
        }
        let tokens_dir =
            PathBuf::from(env(ENV_ARC_TOKENS_DIR).unwrap_or_else(|| ARC_TOKENS_DIR.to_string()));
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(AuthError::ArcClient)?;
        Ok(Some(ArcCredential {
            endpoint,
            tokens_dir,
            http,
            cache: tokio::sync::Mutex::new(None),
        }))
    }

    async fn request(
        &self,
        resource: &str,
        key: Option<&str>,
    ) -> azure_core::Result<reqwest::Response> {
        let mut url = azure_core::http::Url::parse(&self.endpoint).map_err(|e| {
            arc_error(format!(
                "{ENV_IDENTITY_ENDPOINT} ({}) is not a URL: {e}",
                self.endpoint
            ))
        })?;
        url.query_pairs_mut()
            .append_pair("api-version", ARC_API_VERSION)
            .append_pair("resource", resource);
        let mut req = self.http.get(url.as_str()).header("Metadata", "true");
        if let Some(key) = key {
            req = req.header("Authorization", format!("Basic {key}"));
        }
        req.send().await.map_err(|e| {
            arc_error(format!(
                "cannot reach the Azure Arc identity endpoint {}: {e}; check that the himds service runs (azcmagent show)",
                self.endpoint
            ))
        })
    }

    /// Reads the challenge key file after checking where it is.
    fn read_key(&self, challenge: &str) -> azure_core::Result<zeroize::Zeroizing<String>> {
        let realm = challenge
            .split_once("realm=")
            .map(|(_, r)| r.trim().trim_matches('"'))
            .filter(|r| !r.is_empty())
            .ok_or_else(|| {
                arc_error(format!(
                    "the Azure Arc identity endpoint {} sent no key file in its challenge",
                    self.endpoint
                ))
            })?;
        let path = Path::new(realm);
        let inside = path.parent().is_some_and(|p| p == self.tokens_dir);
        let is_key = path.extension().is_some_and(|e| e == "key");
        if !inside || !is_key {
            return Err(arc_error(format!(
                "the Azure Arc identity endpoint {} named the key file {realm}, which is not a .key file in {}; refusing to read it",
                self.endpoint,
                self.tokens_dir.display()
            )));
        }
        let size = std::fs::metadata(path)
            .map_err(|e| arc_error(format!("cannot read the Azure Arc key file {realm}: {e}; akvfs must run as root or in the himds group")))?
            .len();
        if size > ARC_MAX_KEY_BYTES {
            return Err(arc_error(format!(
                "the Azure Arc key file {realm} is {size} bytes, more than a key; refusing to send it"
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            arc_error(format!(
                "cannot read the Azure Arc key file {realm}: {e}; akvfs must run as root or in the himds group"
            ))
        })?;
        Ok(zeroize::Zeroizing::new(text.trim().to_string()))
    }

    async fn fetch(
        &self,
        resource: &str,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        let first = self.request(resource, None).await?;
        let resp = if first.status() == reqwest::StatusCode::UNAUTHORIZED {
            let challenge = first
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let key = self.read_key(&challenge)?;
            self.request(resource, Some(&key)).await?
        } else {
            first
        };
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| {
            arc_error(format!(
                "cannot read the answer of the Azure Arc identity endpoint {}: {e}",
                self.endpoint
            ))
        })?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            let text: String = text.chars().take(300).collect();
            return Err(arc_error(format!(
                "the Azure Arc identity endpoint {} answered {status}: {}",
                self.endpoint,
                text.trim()
            )));
        }
        #[derive(serde::Deserialize)]
        struct ArcToken {
            access_token: zeroize::Zeroizing<String>,
            expires_on: serde_json::Value,
        }
        let token: ArcToken = serde_json::from_slice(&body).map_err(|e| {
            arc_error(format!(
                "the Azure Arc identity endpoint {} sent an unreadable token answer: {e}",
                self.endpoint
            ))
        })?;
        let expires_on = match &token.expires_on {
            serde_json::Value::String(s) => s.parse::<i64>().ok(),
            serde_json::Value::Number(n) => n.as_i64(),
            _ => None,
        }
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .ok_or_else(|| {
            arc_error(format!(
                "the Azure Arc identity endpoint {} sent a token without a valid expires_on",
                self.endpoint
            ))
        })?;
        Ok(azure_core::credentials::AccessToken::new(
            Secret::new(token.access_token.as_str().to_string()),
            expires_on,
        ))
    }
}

#[async_trait::async_trait]
impl TokenCredential for ArcCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        let [scope] = scopes else {
            return Err(arc_error(
                "Azure Arc managed identity needs exactly one scope".to_string(),
            ));
        };
        let resource = scope.strip_suffix("/.default").unwrap_or(scope);
        let mut cached = self.cache.lock().await;
        if let Some((r, t)) = cached.as_ref() {
            if r == resource
                && t.expires_on > time::OffsetDateTime::now_utc() + time::Duration::seconds(300)
            {
                return Ok(t.clone());
            }
        }
        let token = self.fetch(resource).await?;
        *cached = Some((resource.to_string(), token.clone()));
        Ok(token)
    }
}

#[cfg(test)]
mod arc_tests {
    use super::*;

    fn arc(dir: &Path) -> ArcCredential {
        ArcCredential {
            endpoint: "http://127.0.0.1:40342/metadata/identity/oauth2/token".into(),
            tokens_dir: dir.to_path_buf(),
            http: reqwest::Client::new(),
            cache: tokio::sync::Mutex::new(None),
        }
    }

    #[test]
    fn only_small_key_files_in_the_agent_directory_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let good = tokens.join("a.key");
        std::fs::write(&good, "k3y\n").unwrap();
        let c = arc(&tokens);
        let key = c
            .read_key(&format!("Basic realm={}", good.display()))
            .unwrap();
        assert_eq!(key.as_str(), "k3y");

        let outside = dir.path().join("b.key");
        std::fs::write(&outside, "x").unwrap();
        let not_key = tokens.join("c.txt");
        std::fs::write(&not_key, "x").unwrap();
        let big = tokens.join("d.key");
        std::fs::write(&big, vec![b'x'; 4097]).unwrap();
        let nested = tokens.join("sub");
        std::fs::create_dir(&nested).unwrap();
        std::fs::write(nested.join("e.key"), "x").unwrap();
        let traversal = format!("{}/../b.key", tokens.display());
        for realm in [
            outside.display().to_string(),
            not_key.display().to_string(),
            big.display().to_string(),
            nested.join("e.key").display().to_string(),
            traversal,
        ] {
            let err = c
                .read_key(&format!("Basic realm={realm}"))
                .expect_err(&realm)
                .to_string();
            assert!(err.contains("refusing"), "{realm}: {err}");
        }
        assert!(c.read_key("Basic").is_err(), "no realm");
    }
}
