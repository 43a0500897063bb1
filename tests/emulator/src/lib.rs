//! An HTTPS emulator of Azure Key Vault, Entra ID and managed identity, for tests and development.
//!
//! It serves the Azure Key Vault data plane, the Entra ID token endpoint and an App Service-style
//! managed identity endpoint, faithful enough for the official Azure SDKs
//! (Rust and Python) to run unmodified against it. It is used by the akvfs integration tests and
//! for local development; `docs/EMULATOR.md` documents the behaviour and every known difference
//! from the real services.
//!
//! ```no_run
//! use akvfs_emulator::{Emulator, EmulatorConfig};
//! let emu = Emulator::spawn(EmulatorConfig::default()).expect("emulator starts");
//! emu.set_secret("db-password", "s3cret").expect("valid name");
//! println!("{}", emu.info().vault_url);
//! assert_eq!(emu.counts().get("get_secret"), 0);
//! ```
//!
//! # Layout
//! - [`config`]: [`EmulatorConfig`], identities and their permissions; `seed`: the seed file
//!   format.
//! - `emulator`: the running [`Emulator`] handle and [`ReadyInfo`] (the ready line);
//!   `prepare`: binding, certificates and state before serving; `emulator_api`: its synchronous
//!   test controls; [`extra`]: extra vaults, each on its own
//!   listener with its own state, sharing the Entra ID's signing keys.
//! - `server`: TLS connections, routing, fault application and connection resets; `serving`:
//!   the accept loop and HTTP/1.1 connection shared with the plain-HTTP endpoints.
//! - `vault`: the data plane's front door (auth challenge, faults, request budget, errors,
//!   response headers); `access`: access policies and denied names; `bodies`: request bodies;
//!   `paging`: `maxresults`, `$skiptoken` and `nextLink`; `wire`: JSON pieces every answer shares.
//! - `secrets_api`: the secrets REST API; `secret_json`: its bundles and items.
//! - `entra`: the token endpoint and Entra's errors; `credentials`: client secret and assertion
//!   checks; `discovery`: the discovery documents; `kubelet`: pod-bound service-account tokens as
//!   kubelet obtains them.
//! - `msi`: the managed identity endpoint (and the identity lookup and token IMDS shares).
//! - [`imds`]: the Instance Metadata Service (Azure VM) and Azure Arc token endpoints, plain HTTP.
//! - `admin`: the `/_emulator/` admin API; `control`: the changes it shares with [`Emulator`].
//! - `objroutes`: routes and checks of the certificates and keys APIs; `objapi`: what both do
//!   alike; `certs_api`, `keys_api`: their operations; `objects`: their store; `certadd`: a
//!   certificate version with its key and secret; `objseed`, `objconfig`: their seed entries and
//!   permissions; [`certgen`]: key and certificate material (also test chains).
//! - `store`: secrets, versions and soft-deleted secrets; `secret`: the secret types;
//!   `vault_error`: the data plane's error; `props`: the properties a writer sets on a version,
//!   shared by the seed, admin and REST bodies; `backup`: sealed backup blobs.
//! - `state`: the one mutex around all mutable state, token minting and verification.
//! - [`counts`]: operation names and request counters; [`faults`]: fault injection (its JSON form
//!   in `fault_json`); `throttle`: the request budget.
//! - `tls`: the generated test CA and server certificate; `jwt`: HS256 tokens; `http`, `util`:
//!   plumbing.

mod access;
mod admin;
mod backup;
mod bodies;
mod certadd;
pub mod certgen;
mod certs_api;
pub mod config;
mod control;
pub mod counts;
mod credentials;
mod discovery;
mod emulator;
mod emulator_api;
mod entra;
pub mod extra;
mod fault_json;
pub mod faults;
mod faults_extra;
mod http;
pub mod imds;
mod jwt;
mod keys_api;
mod kubelet;
mod msi;
mod objapi;
mod objconfig;
mod objcontrol;
mod objects;
mod objroutes;
mod objseed;
mod paging;
mod prepare;
mod props;
mod secret;
mod secret_json;
mod secrets_api;
mod seed;
mod server;
mod serving;
mod state;
mod store;
mod testchain;
mod throttle;
mod tls;
mod util;
mod vault;
mod vault_error;
mod wire;

pub use config::{
    EmulatorConfig, Identity, ObjectPermissions, Permissions, Seed, SeedCertVersion,
    SeedCertificate, SeedKey, SeedKeyVersion, SeedPolicy, SeedSecret, SeedVersion,
};
pub use control::{SecretSpec, SecretUpdate, SecretView, VersionView};
pub use counts::{Counts, Operation};
pub use emulator::{Emulator, EmulatorError, ReadyInfo};
pub use entra::ASSERTION_TYPE;
pub use extra::ExtraVaultInfo;
pub use faults::{ActiveFault, Fault, FaultKind};
pub use faults_extra::{
    clear_extra, inject_extra, vault_audiences, ExtraFault, ExtraTarget, NextLink,
};
pub use kubelet::ServiceAccountToken;
pub use state::{FederatedTokenSpec, TokenSpec};
pub use store::{is_valid_name, MAX_VALUE_BYTES, RECOVERABLE_DAYS, RECOVERY_LEVEL};
pub use vault::{API_VERSIONS, LATEST_API_VERSION, MAX_RESULTS};
