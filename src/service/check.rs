//! `akvfs check`: which identity is used, whether it gets a token, and whether it can list the vault.

use std::time::Duration;

use crate::auth::{whoami, AuthError};
use crate::config::{AuthConfig, VaultConfig};
use crate::metrics::MountMetrics;
use crate::vault::{PageCount, VaultError};

use super::connect::connect;
use super::{runtime, Error};

/// `akvfs check`: identity, token, and list access. Prints names, never values.
/// The token and the listing each get `timeout` (`fetch_timeout`).
pub fn check(vault: VaultConfig, auth: AuthConfig, timeout: Duration) -> Result<(), Error> {
    let rt = runtime()?;
    let conn = connect(&vault, &auth, &MountMetrics::detached())?;
    println!("vault:    {}", vault.url);
    println!(
        "auth:     {} ({})",
        conn.identity.mode.as_str(),
        conn.identity.reason
    );
    match crate::daemon::harden::planned_mode(true, crate::config::CacheConfig::default().max_bytes)
    {
        Ok(mode) => println!("memory:   {}", mode.describe()),
        Err(e) => println!("memory:   {e}"),
    }
    rt.block_on(async {
        let mode = conn.identity.mode.as_str();
        let (claims, expires) = tokio::time::timeout(timeout, whoami(&conn.identity.credential))
            .await
            .unwrap_or(Err(AuthError::TokenTimeout(timeout)))
            .map_err(|source| Error::Token { mode, source })?;
        let who = claims
            .upn
            .clone()
            .or(claims.unique_name.clone())
            .or(claims.appid.clone())
            .or(claims.azp.clone())
            .unwrap_or_else(|| "(not stated in the token)".into());
        println!("identity: {who}");
        if let Some(oid) = &claims.oid {
            println!("object:   {oid}");
        }
        if let Some(tid) = &claims.tid {
            println!("tenant:   {tid}");
        }
        if let Some(mi) = &claims.xms_mirid {
            println!("resource: {mi}");
        }
        let until = expires
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        println!("token:    ok, valid until {until}");
        let pages = PageCount::default();
        let names = tokio::time::timeout(timeout, conn.vault.list(&pages))
            .await
            .unwrap_or(Err(VaultError::Timeout(timeout)))
            .map_err(|source| Error::List {
                vault: vault.url.clone(),
                source,
            })?;
        println!(
            "list:     ok, {} secrets ({} pages)",
            names.len(),
            pages.get()
        );
        for s in names {
            let state = if s.enabled { "" } else { "  (disabled)" };
            println!("  {}{state}", s.name);
        }
        Ok::<(), Error>(())
    })
}
