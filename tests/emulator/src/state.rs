//! The emulator's shared state: one mutex around everything mutable, and what never changes.
//!
//! The emulator's shared state: one mutex around everything mutable (store, identities, counters,
//! faults, throttle window, token settings), plus the immutable signing keys and settings.
//!
//! A `std::sync::Mutex` is the right lock here: no handler holds it across an `.await` (latency is
//! slept after the guard is dropped), and it lets the synchronous test API share the same state.

use crate::config::{Identity, Seed, FEDERATED_AUDIENCE, VAULT_RESOURCE};
use crate::counts::Counts;
use crate::faults::Faults;
use crate::jwt::{self, JwtError, SigningKey};
use crate::secret::NewVersion;
use crate::store::Store;
use crate::util;
use crate::vault_error::VaultError;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub(crate) use crate::throttle::Throttle;

/// Longest access token lifetime accepted (a year): keeps `exp` arithmetic far from overflow.
pub(crate) const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(365 * 86_400);

/// Settings fixed at start.
pub(crate) struct Settings {
    pub tenant_id: String,
    pub vault_url: String,
    pub authority_host: String,
    pub default_client_id: String,
    pub federated_issuer: String,
    pub federated_token_lifetime: Duration,
    pub federated_token_file: PathBuf,
    pub identity_header: String,
    pub info: crate::emulator::ReadyInfo,
}

/// State shared by the server tasks and the [`crate::Emulator`] handle.
pub(crate) struct Shared {
    pub settings: Settings,
    pub access_key: SigningKey,
    pub federated_key: SigningKey,
    /// Seals and opens secret backups (only this instance can restore them).
    pub backup_key: crate::backup::BackupKey,
    state: Mutex<State>,
}

/// Everything that changes while the emulator runs.
pub(crate) struct State {
    pub store: Store,
    /// Identities by lowercase client id.
    pub identities: BTreeMap<String, Identity>,
    pub counts: Counts,
    pub faults: Faults,
    pub throttle: Throttle,
    pub token_lifetime: Duration,
    /// `jti` of federated tokens that were rotated away.
    pub revoked_assertions: HashSet<String>,
    /// `jti` of the token currently in the federated token file.
    pub current_assertion: String,
    /// Certificates and keys.
    pub objects: crate::objects::Objects,
}

/// The caller of an authenticated vault request.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub client_id: String,
    pub object_id: String,
}

/// What is wrong with a presented access token (each maps to a 401 message).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenRejection {
    Malformed,
    BadSignature,
    Expired,
    NotYetValid,
    Audience(String),
    Issuer(String),
}

/// Parameters of an access token to mint.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    /// `appid` claim; the vault looks the identity up by it.
    pub client_id: String,
    /// Seconds from now until `exp` (negative: already expired).
    pub lifetime_secs: i64,
    /// `aud` claim (default `https://vault.azure.net`).
    pub audience: Option<String>,
    /// `tid` claim and issuer tenant (default: the emulator's tenant).
    pub tenant_id: Option<String>,
}

impl TokenSpec {
    /// A vault token for `client_id` valid for `lifetime`.
    pub fn new(client_id: &str, lifetime: Duration) -> Self {
        TokenSpec {
            client_id: client_id.to_string(),
            lifetime_secs: lifetime.as_secs() as i64,
            audience: None,
            tenant_id: None,
        }
    }
}

/// Parameters of a federated (service account) token to mint.
#[derive(Debug, Clone, Default)]
pub struct FederatedTokenSpec {
    /// `sub` (default: the configured federated subject).
    pub subject: Option<String>,
    /// `aud` (default `api://AzureADTokenExchange`).
    pub audience: Option<String>,
    /// `iss` (default: the configured federated issuer).
    pub issuer: Option<String>,
    /// Seconds from now until `exp` (default: the configured federated token lifetime;
    /// negative: already expired).
    pub lifetime_secs: Option<i64>,
}

impl Shared {
    pub(crate) fn new(
        settings: Settings,
        identities: Vec<Identity>,
        token_lifetime: Duration,
        budget: u32,
    ) -> Self {
        let keys = (
            SigningKey::generate("akvfs-emulator-access"),
            SigningKey::generate("akvfs-emulator-federation"),
        );
        Shared::with_keys(settings, identities, token_lifetime, budget, keys)
    }

    /// A vault's state with given (access, federated) signing keys: an extra vault shares the
    /// first vault's, so a token from the one Entra ID is accepted by every vault.
    pub(crate) fn with_keys(
        settings: Settings,
        identities: Vec<Identity>,
        token_lifetime: Duration,
        budget: u32,
        (access_key, federated_key): (SigningKey, SigningKey),
    ) -> Self {
        let mut map = BTreeMap::new();
        for id in identities {
            map.insert(id.client_id.to_ascii_lowercase(), id);
        }
        Shared {
            settings,
            access_key,
            federated_key,
            backup_key: crate::backup::BackupKey::generate(),
            state: Mutex::new(State {
                store: Store::default(),
                identities: map,
                counts: Counts::zero(),
                faults: Faults::default(),
                throttle: Throttle::new(budget),
                token_lifetime,
                revoked_assertions: HashSet::new(),
                current_assertion: String::new(),
                objects: Default::default(),
            }),
        }
    }

    /// Locks the state. A panic while locked cannot leave it half-updated in a way that matters
    /// to a test emulator, so a poisoned lock is simply taken over.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn ready_info(&self) -> crate::emulator::ReadyInfo {
        self.settings.info.clone()
    }

    pub(crate) fn bump(&self, name: &str) {
        self.lock().counts.bump(name);
    }

    /// Issues an access token; returns it with its `exp`.
    pub(crate) fn mint_access_token(&self, identity: &Identity, spec: &TokenSpec) -> (String, i64) {
        let now = util::now_unix();
        let exp = now.saturating_add(spec.lifetime_secs);
        let tenant = spec
            .tenant_id
            .clone()
            .unwrap_or_else(|| self.settings.tenant_id.clone());
        let oid = identity.oid();
        let mut c = Map::new();
        c.insert(
            "aud".into(),
            Value::from(
                spec.audience
                    .clone()
                    .unwrap_or_else(|| VAULT_RESOURCE.to_string()),
            ),
        );
        c.insert(
            "iss".into(),
            Value::from(format!("https://sts.windows.net/{tenant}/")),
        );
        c.insert("iat".into(), Value::from(now.min(exp)));
        c.insert("nbf".into(), Value::from(now.min(exp)));
        c.insert("exp".into(), Value::from(exp));
        c.insert("appid".into(), Value::from(spec.client_id.clone()));
        c.insert("appidacr".into(), Value::from("2"));
        c.insert("idtyp".into(), Value::from("app"));
        c.insert(
            "idp".into(),
            Value::from(format!("https://sts.windows.net/{tenant}/")),
        );
        c.insert("oid".into(), Value::from(oid.clone()));
        c.insert("sub".into(), Value::from(oid));
        c.insert("tid".into(), Value::from(tenant));
        c.insert("uti".into(), Value::from(util::random_hex(11)));
        c.insert("ver".into(), Value::from("1.0"));
        (self.access_key.sign(&c), exp)
    }

    /// Verifies an access token presented to the vault.
    pub(crate) fn verify_access_token(&self, token: &str) -> Result<Caller, TokenRejection> {
        let claims = self.access_key.verify(token).map_err(|e| match e {
            JwtError::Malformed => TokenRejection::Malformed,
            JwtError::BadSignature => TokenRejection::BadSignature,
        })?;
        let now = util::now_unix();
        let exp = jwt::int_claim(&claims, "exp").ok_or(TokenRejection::Malformed)?;
        if now >= exp {
            return Err(TokenRejection::Expired);
        }
        if jwt::int_claim(&claims, "nbf").is_some_and(|nbf| nbf > now) {
            return Err(TokenRejection::NotYetValid);
        }
        let aud = jwt::str_claim(&claims, "aud").unwrap_or_default();
        if aud != VAULT_RESOURCE {
            return Err(TokenRejection::Audience(aud.to_string()));
        }
        let expected_iss = format!("https://sts.windows.net/{}/", self.settings.tenant_id);
        let iss = jwt::str_claim(&claims, "iss").unwrap_or_default();
        let tid = jwt::str_claim(&claims, "tid").unwrap_or_default();
        if iss != expected_iss || !tid.eq_ignore_ascii_case(&self.settings.tenant_id) {
            return Err(TokenRejection::Issuer(iss.to_string()));
        }
        Ok(Caller {
            client_id: jwt::str_claim(&claims, "appid")
                .unwrap_or_default()
                .to_string(),
            object_id: jwt::str_claim(&claims, "oid")
                .unwrap_or_default()
                .to_string(),
        })
    }

    /// Mints a federated token; returns it with its `jti`.
    pub(crate) fn mint_federated_token(&self, spec: &FederatedTokenSpec) -> (String, String) {
        let now = util::now_unix();
        let lifetime = spec
            .lifetime_secs
            .unwrap_or(self.settings.federated_token_lifetime.as_secs() as i64);
        let exp = now.saturating_add(lifetime);
        let jti = util::random_uuid();
        let mut c = Map::new();
        c.insert(
            "aud".into(),
            Value::Array(vec![Value::from(
                spec.audience
                    .clone()
                    .unwrap_or_else(|| FEDERATED_AUDIENCE.to_string()),
            )]),
        );
        c.insert("exp".into(), Value::from(exp));
        c.insert("iat".into(), Value::from(now.min(exp)));
        c.insert("nbf".into(), Value::from(now.min(exp)));
        c.insert(
            "iss".into(),
            Value::from(
                spec.issuer
                    .clone()
                    .unwrap_or_else(|| self.settings.federated_issuer.clone()),
            ),
        );
        c.insert("jti".into(), Value::from(jti.clone()));
        c.insert(
            "sub".into(),
            Value::from(
                spec.subject
                    .clone()
                    .unwrap_or_else(|| self.default_federated_subject()),
            ),
        );
        (self.federated_key.sign(&c), jti)
    }

    fn default_federated_subject(&self) -> String {
        let st = self.lock();
        st.identities
            .get(&self.settings.default_client_id.to_ascii_lowercase())
            .and_then(|i| i.federated_subjects.first().cloned())
            .unwrap_or_else(|| crate::config::DEFAULT_FEDERATED_SUBJECT.to_string())
    }

    /// Writes a new federated token to the token file; the previous one is revoked.
    pub(crate) fn rotate_federated_token(&self) -> Result<String, std::io::Error> {
        let (token, jti) = self.mint_federated_token(&FederatedTokenSpec::default());
        util::write_private(&self.settings.federated_token_file, token.as_bytes())?;
        let mut st = self.lock();
        let previous = std::mem::replace(&mut st.current_assertion, jti);
        if !previous.is_empty() {
            st.revoked_assertions.insert(previous);
        }
        Ok(token)
    }

    /// Applies a seed: secrets become new versions, identities are added or replaced.
    pub(crate) fn apply_seed(&self, seed: &Seed) -> Result<(), String> {
        let mut st = self.lock();
        for id in &seed.identities {
            if id.client_id.is_empty() {
                return Err("an identity has an empty client_id".into());
            }
            st.identities
                .insert(id.client_id.to_ascii_lowercase(), id.clone());
        }
        let now = util::now_unix();
        for s in &seed.secrets {
            let mut versions: Vec<NewVersion> = s
                .versions
                .iter()
                .map(|v| {
                    v.props()
                        .new_version(v.value.clone(), v.version.clone(), v.created)
                })
                .collect();
            match (&s.value, versions.is_empty()) {
                (Some(value), true) => {
                    versions.push(s.props().new_version(value.clone(), None, s.created))
                }
                (None, false) => {}
                (Some(_), false) => {
                    return Err(format!(
                        "secret {}: give either \"value\" or \"versions\", not both",
                        s.name
                    ))
                }
                (None, true) => {
                    return Err(format!(
                        "secret {}: needs \"value\" or \"versions\"",
                        s.name
                    ))
                }
            }
            for v in versions {
                st.store
                    .set(&s.name, v, now)
                    .map_err(|e| format!("secret {}: {}", s.name, e.message))?;
            }
            if s.deleted {
                st.store
                    .delete(&s.name, now)
                    .map_err(|e| format!("secret {}: {}", s.name, e.message))?;
            }
        }
        crate::objseed::apply(&mut st, seed, now)?;
        Ok(())
    }

    /// The identity with `client_id`, if any.
    pub(crate) fn identity(&self, client_id: &str) -> Option<Identity> {
        self.lock()
            .identities
            .get(&client_id.to_ascii_lowercase())
            .cloned()
    }

    /// Stores a secret version directly (test API, no HTTP).
    pub(crate) fn set_secret(&self, name: &str, new: NewVersion) -> Result<String, VaultError> {
        let (_, v) = self.lock().store.set(name, new, util::now_unix())?;
        Ok(v.id)
    }
}
