//! Validated, typed configuration. The CLI (and later a config file) produce
//! raw values; everything here has been checked, so the rest of the program
//! never re-validates.

use std::path::PathBuf;
use std::time::Duration;

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
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_bytes: 64 << 20,
            negative_ttl: Duration::from_secs(5),
            fetch_timeout: Duration::from_secs(10),
            max_concurrent_fetches: 16,
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
    pub refresh: crate::refresh::RefreshConfig,
    /// Serve every open through the daemon instead of the kernel page cache.
    pub strict_open: bool,
    pub foreground: bool,
    pub mlock: bool,
}

/// Turns `myvault` or `https://myvault.vault.azure.net[:port][/]` into a vault URL.
pub fn parse_vault(input: &str) -> Result<String, String> {
    let input = input.trim();
    if input.contains("://") {
        let rest = input.strip_prefix("https://").ok_or_else(|| {
            format!("vault URL {input:?} must use https:// (Key Vault only serves HTTPS)")
        })?;
        let host_port = rest.trim_end_matches('/');
        if host_port.is_empty() || host_port.contains(['/', '?', '#', '@', ' ']) {
            return Err(format!(
                "vault URL {input:?} must be just scheme and host, like https://myvault.vault.azure.net"
            ));
        }
        return Ok(format!("https://{host_port}"));
    }
    if is_vault_name(input) {
        Ok(format!("https://{input}.vault.azure.net"))
    } else {
        Err(format!(
            "{input:?} is neither a vault name (3-24 letters, digits and single hyphens, starting with a letter) nor an https:// URL"
        ))
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

/// Parses `64MiB`, `1G`, `512k`, `1048576`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size; use e.g. 64MiB, 512KiB or 1048576"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{s:?} has an unknown unit; use B, KiB, MiB or GiB")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses an octal mode such as `0400` or `440`.
pub fn parse_mode(s: &str) -> Result<u16, String> {
    let m = u16::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|_| format!("{s:?} is not an octal mode like 0400"))?;
    if m > 0o7777 {
        return Err(format!("{s:?} is not a valid mode (at most 07777)"));
    }
    if m & 0o7000 != 0 {
        return Err(format!("{s:?}: setuid, setgid and sticky bits are not allowed"));
    }
    Ok(m)
}

/// Parses `30s`, `10m`, `24h`, `500ms`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; use e.g. 500ms, 30s, 10m or 24h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?} has an unknown unit; use ms, s, m or h")),
    };
    if !secs.is_finite() || secs < 0.0 || secs > 365.0 * 86400.0 {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_names_and_urls() {
        assert_eq!(parse_vault("myvault").unwrap(), "https://myvault.vault.azure.net");
        assert_eq!(
            parse_vault("https://kv.vault.azure.net/").unwrap(),
            "https://kv.vault.azure.net"
        );
        assert_eq!(
            parse_vault("https://127.0.0.1:8443").unwrap(),
            "https://127.0.0.1:8443"
        );
        for bad in ["my_vault", "ab", "1vault", "vault-", "a--b", "http://kv.vault.azure.net", "https://kv/secrets", "https://"] {
            assert!(parse_vault(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn sizes_modes_durations() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert_eq!(parse_mode("0400").unwrap(), 0o400);
        assert!(parse_mode("0800").is_err());
        assert!(parse_mode("4755").is_err());
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1y").is_err());
    }
}
