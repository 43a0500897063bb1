//! Validated, typed configuration. Flags, `-o` options and the config file
//! all produce one [`MountOptions`]; validating it gives the types here, so
//! the rest of the program never re-validates.

use std::path::PathBuf;
use std::time::Duration;

mod dash_o;
mod error;
mod field_error;
mod file;
pub mod notice;
mod options;
pub mod spc;
mod units;
mod validate;
mod view_sources;
pub mod views;
pub mod views_error;

pub use dash_o::parse_mount_options;
pub use error::ConfigError;
pub use field_error::{FieldError, Problem};
pub use file::{load_config_file, ConfigFile};
pub use notice::NoticeConfig;
pub use options::{ConnectionOptions, MountOptions};
pub use units::{parse_duration, parse_mode, parse_size};
pub use views::{Encoding, ViewObject, ViewRoot, ViewSpec};

/// Environment variables akvfs reads for authentication.
pub const ENV_CLIENT_SECRET: &str = "AZURE_CLIENT_SECRET";
pub const ENV_CLIENT_ID: &str = "AZURE_CLIENT_ID";
pub const ENV_TENANT_ID: &str = "AZURE_TENANT_ID";
pub const ENV_FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";
pub const ENV_IDENTITY_ENDPOINT: &str = "IDENTITY_ENDPOINT";

/// How akvfs authenticates to Entra ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Client secret, then workload identity, then managed identity, then Azure CLI.
    Auto,
    /// Kubernetes workload identity: a federated service-account token.
    WorkloadIdentity,
    /// An Azure VM's (or App Service-style endpoint's) managed identity.
    ManagedIdentity,
    /// The signed-in Azure CLI user (`az login`).
    AzureCli,
    /// A service principal with AZURE_CLIENT_SECRET.
    ClientSecret,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Auto => "auto",
            AuthMode::WorkloadIdentity => "workload-identity",
            AuthMode::ManagedIdentity => "managed-identity",
            AuthMode::AzureCli => "azure-cli",
            AuthMode::ClientSecret => "client-secret",
        }
    }
}

/// Identity settings, with environment defaults already applied.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    pub mode: AuthMode,
    pub client_id: Option<String>,
    pub tenant_id: Option<String>,
    pub federated_token_file: Option<PathBuf>,
}

/// How to reach the vault.
#[derive(Clone, Debug)]
pub struct VaultConfig {
    /// `https://name.vault.azure.net` (no trailing slash).
    pub url: String,
    pub ca_file: Option<PathBuf>,
    pub verify_challenge_resource: bool,
}

/// Ownership and permissions of the files in the mount.
#[derive(Clone, Copy, Debug)]
pub struct OwnerConfig {
    pub uid: u32,
    pub gid: u32,
    pub file_mode: u16,
    pub dir_mode: u16,
    pub allow_other: bool,
    /// Root may read too (and no other user but the owner).
    pub allow_root: bool,
}

/// The value cache and upstream behaviour.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// Memory budget of cached values, in bytes.
    pub max_bytes: u64,
    /// How long "not found" (and other refusals) are remembered.
    pub negative_ttl: Duration,
    /// How long a read with nothing cached may wait for the vault.
    pub fetch_timeout: Duration,
    /// Cold fetches running at once.
    pub max_concurrent_fetches: usize,
    /// Cold fetches that lookups of names missing from the listing may make
    /// in any 10 seconds.
    pub max_cold_lookups_per_10s: u32,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_bytes: 64 << 20,
            negative_ttl: Duration::from_secs(5),
            fetch_timeout: Duration::from_secs(10),
            max_concurrent_fetches: 16,
            max_cold_lookups_per_10s: 100,
        }
    }
}

/// Everything one mount needs.
#[derive(Clone, Debug)]
pub struct MountConfig {
    pub vault: VaultConfig,
    pub mountpoint: PathBuf,
    pub auth: AuthConfig,
    pub owner: OwnerConfig,
    pub cache: CacheConfig,
    pub refresh: RefreshConfig,
    /// Change notices to follow, if any.
    pub notice: Option<NoticeConfig>,
    /// Files declared one by one (empty: none).
    pub views: Vec<ViewSpec>,
    /// What the root shows.
    pub view_root: ViewRoot,
    /// Serve every open through the daemon instead of the kernel page cache.
    pub strict_open: bool,
    /// Mount over a directory that has files in it.
    pub nonempty: bool,
    pub foreground: bool,
    pub mlock: bool,
}

/// Turns `myvault` or `https://myvault.vault.azure.net[:port][/]` into a vault URL.
pub fn parse_vault(input: &str) -> Result<String, ConfigError> {
    let input = input.trim();
    if input.contains("://") {
        let rest = input
            .strip_prefix("https://")
            .ok_or_else(|| ConfigError::VaultScheme {
                input: input.to_string(),
            })?;
        let host_port = rest.trim_end_matches('/');
        if host_port.is_empty() || host_port.contains(['/', '?', '#', '@', ' ']) {
            return Err(ConfigError::VaultUrl {
                input: input.to_string(),
            });
        }
        return Ok(format!("https://{host_port}"));
    }
    if is_vault_name(input) {
        Ok(format!("https://{input}.vault.azure.net"))
    } else {
        Err(ConfigError::VaultName {
            input: input.to_string(),
        })
    }
}

fn is_vault_name(s: &str) -> bool {
    let b = s.as_bytes();
    (3..=24).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && !s.contains("--")
}

/// Refresher settings.
#[derive(Clone, Copy, Debug)]
pub struct RefreshConfig {
    pub interval: Duration,
    pub idle_timeout: Duration,
    pub max_stale: Duration,
    /// Longest time a cached value is served without a GET proving the
    /// identity may still read it.
    pub max_unverified: Duration,
    /// Upstream calls the refresher may make in any 10 seconds.
    pub max_requests_per_10s: u32,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        RefreshConfig {
            interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            max_stale: Duration::from_secs(24 * 3600),
            max_unverified: Duration::from_secs(600),
            max_requests_per_10s: 50,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_names_and_urls() {
        assert_eq!(
            parse_vault("myvault").unwrap(),
            "https://myvault.vault.azure.net"
        );
        assert_eq!(
            parse_vault("https://kv.vault.azure.net/").unwrap(),
            "https://kv.vault.azure.net"
        );
        assert_eq!(
            parse_vault("https://127.0.0.1:8443").unwrap(),
            "https://127.0.0.1:8443"
        );
        for bad in [
            "my_vault",
            "ab",
            "1vault",
            "vault-",
            "a--b",
            "http://kv.vault.azure.net",
            "https://kv/secrets",
            "https://",
        ] {
            assert!(parse_vault(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn check_validates_mount_only_settings_too() {
        let with_cache = |size: &str| MountOptions {
            vault: Some("myvault".into()),
            cache_bytes: Some(size.into()),
            allow_other: Some(true),
            ..MountOptions::default()
        };
        let e = with_cache("lots").validate_for_check().unwrap_err();
        assert!(
            matches!(
                &e,
                FieldError {
                    field: "cache_bytes",
                    problem: Problem::Value(ConfigError::Size { value })
                } if value == "lots"
            ),
            "{e:?}"
        );
        let (vault, _, timeout) = with_cache("1MiB").validate_for_check().unwrap();
        assert_eq!(timeout, Duration::from_secs(10));
        assert_eq!(vault.url, "https://myvault.vault.azure.net");
    }
}
