//! The synchronous test controls of a running [`Emulator`] and of each extra vault.
//!
//! The synchronous test controls of a running [`Emulator`] (and of each extra vault): secrets,
//! identities and permissions, tokens, counters, faults and throttling, acting on the same state
//! as the admin API.

use crate::config::{Identity, Permissions, Seed};
use crate::control::{SecretSpec, SecretUpdate, SecretView};
use crate::counts::Counts;
use crate::emulator::{Emulator, EmulatorError};
use crate::faults::{ActiveFault, Fault};
use crate::state::{FederatedTokenSpec, Shared, TokenSpec};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

impl Emulator {
    /// Stores a new version of `name` with `value`; returns the version id.
    pub fn set_secret(&self, name: &str, value: &str) -> Result<String, EmulatorError> {
        self.set_secret_with(name, SecretSpec::value(value))
    }

    /// Stores a new version with content type, tags and attributes; returns the version id.
    pub fn set_secret_with(&self, name: &str, spec: SecretSpec) -> Result<String, EmulatorError> {
        self.shared
            .put_secret(name, spec)
            .map_err(EmulatorError::Refused)
    }

    /// Changes attributes of the latest (or a given) version; returns the version id changed.
    pub fn update_secret(&self, name: &str, update: SecretUpdate) -> Result<String, EmulatorError> {
        self.shared
            .patch_secret(name, update)
            .map_err(EmulatorError::Refused)
    }

    /// Disables the latest version of `name`.
    pub fn disable_secret(&self, name: &str) -> Result<(), EmulatorError> {
        self.set_enabled(name, None, false)
    }

    /// Enables or disables a version (None: the latest).
    pub fn set_enabled(
        &self,
        name: &str,
        version: Option<&str>,
        enabled: bool,
    ) -> Result<(), EmulatorError> {
        self.update_secret(
            name,
            SecretUpdate {
                version: version.map(str::to_string),
                enabled: Some(enabled),
                ..Default::default()
            },
        )
        .map(|_| ())
    }

    /// Soft-deletes `name` (it disappears from get and list; its name stays reserved).
    pub fn delete_secret(&self, name: &str) -> Result<(), EmulatorError> {
        self.shared
            .remove_secret(name, false)
            .map_err(EmulatorError::Refused)
    }

    /// Deletes and purges `name`.
    pub fn purge_secret(&self, name: &str) -> Result<(), EmulatorError> {
        self.shared
            .remove_secret(name, true)
            .map_err(EmulatorError::Refused)
    }

    /// Removes every secret, live and deleted.
    pub fn clear_secrets(&self) {
        self.shared.lock().store.clear();
    }

    /// Every secret with its versions and values.
    pub fn secrets(&self) -> Vec<SecretView> {
        self.shared.secrets_view()
    }

    /// One secret (live or deleted) by name, case-insensitively.
    pub fn secret(&self, name: &str) -> Option<SecretView> {
        self.secrets()
            .into_iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Adds secrets and identities (same format as `--seed`).
    pub fn seed(&self, seed: &Seed) -> Result<(), EmulatorError> {
        self.shared.apply_seed(seed).map_err(EmulatorError::Seed)
    }

    /// A snapshot of the request counters.
    pub fn counts(&self) -> Counts {
        self.shared.lock().counts.clone()
    }

    /// Sets every counter to zero.
    pub fn reset_counts(&self) {
        self.shared.lock().counts = Counts::zero();
    }

    /// Adds a fault; returns its id.
    pub fn inject_fault(&self, fault: Fault) -> Result<u64, EmulatorError> {
        self.shared
            .lock()
            .faults
            .add(fault)
            .map_err(EmulatorError::Refused)
    }

    /// The active faults with how often each fired.
    pub fn faults(&self) -> Vec<ActiveFault> {
        self.shared.lock().faults.list()
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Replaces the permissions of an identity.
    pub fn set_permissions(
        &self,
        client_id: &str,
        permissions: Permissions,
    ) -> Result<(), EmulatorError> {
        self.shared
            .set_permissions(client_id, permissions, None)
            .map_err(EmulatorError::Refused)
    }

    /// Grants permissions (e.g. `&["set"]`) to an identity, keeping the others; returns the result.
    pub fn grant(&self, client_id: &str, names: &[&str]) -> Result<Permissions, EmulatorError> {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        self.shared
            .change_permissions(client_id, &names, true)
            .map_err(EmulatorError::Refused)
    }

    /// Revokes permissions from an identity, keeping the others; returns the result.
    pub fn revoke(&self, client_id: &str, names: &[&str]) -> Result<Permissions, EmulatorError> {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        self.shared
            .change_permissions(client_id, &names, false)
            .map_err(EmulatorError::Refused)
    }

    /// Denies (or allows again) one secret to an identity regardless of its permissions.
    pub fn deny_secret(
        &self,
        client_id: &str,
        secret: &str,
        denied: bool,
    ) -> Result<(), EmulatorError> {
        let identity = self
            .shared
            .identity(client_id)
            .ok_or_else(|| EmulatorError::Refused(format!("no identity {client_id}")))?;
        let mut list: Vec<String> = identity
            .denied_secrets
            .into_iter()
            .filter(|s| !s.eq_ignore_ascii_case(secret))
            .collect();
        if denied {
            list.push(secret.to_string());
        }
        self.shared
            .set_permissions(client_id, identity.permissions, Some(list))
            .map_err(EmulatorError::Refused)
    }

    /// Adds or replaces an identity.
    pub fn add_identity(&self, identity: Identity) -> Result<(), EmulatorError> {
        self.shared
            .upsert_identity(identity)
            .map_err(EmulatorError::Refused)
    }

    /// Removes an identity (its tokens then get 403 from the vault).
    pub fn remove_identity(&self, client_id: &str) -> Result<(), EmulatorError> {
        self.shared
            .remove_identity(client_id)
            .map_err(EmulatorError::Refused)
    }

    /// An access token for `client_id` valid for `lifetime`, as the token endpoint would issue
    /// (what a fake `az account get-access-token` can print).
    pub fn mint_token(&self, client_id: &str, lifetime: Duration) -> String {
        self.shared
            .mint_token(&TokenSpec::new(client_id, lifetime))
            .0
    }

    /// An access token with any lifetime (negative: expired), audience or tenant; returns the
    /// token and its `exp`.
    pub fn mint_token_with(&self, spec: &TokenSpec) -> (String, i64) {
        self.shared.mint_token(spec)
    }

    /// A federated token (client assertion) signed by the emulator, not written anywhere.
    pub fn mint_federated_token(&self, spec: &FederatedTokenSpec) -> String {
        self.shared.mint_assertion(spec)
    }

    /// A pod-bound service-account token, as kubelet passes to a CSI driver that asks for one
    /// (`tokenRequests`); Entra ID accepts it for an identity whose federated subjects name it.
    pub fn mint_service_account_token(&self, spec: &crate::ServiceAccountToken) -> String {
        self.shared.mint_service_account_token(spec)
    }

    /// Writes a new federated token to `federated_token_file` and revokes the previous one;
    /// returns the new token.
    pub fn rotate_federated_token(&self) -> Result<String, EmulatorError> {
        self.shared
            .rotate_federated_token()
            .map_err(|source| EmulatorError::StateDir {
                path: self.info.federated_token_file.clone(),
                source,
            })
    }

    /// Sets the lifetime of tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.shared.lock().token_lifetime =
            lifetime.clamp(Duration::from_secs(1), crate::state::MAX_TOKEN_LIFETIME);
    }

    /// Sets the request budget per 10 s (and empties the current window).
    pub fn set_requests_per_10s(&self, budget: u32) {
        self.shared.lock().throttle.set_budget(budget);
    }

    /// The directory holding `ca.pem` and `federated-token`.
    pub fn state_dir(&self) -> &Path {
        &self.info.state_dir
    }
}
