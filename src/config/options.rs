//! The mount options, defined once: the same struct is the flags of `akvfs
//! mount` (clap), a `[[mount]]` section of the config file (serde) and the
//! `-o` options of fstab. Adding an option is one field here plus its rule in
//! [`MountOptions::validate`].

use std::path::PathBuf;

use super::dash_o::OptionValue;
use super::AuthMode;

/// Declares [`MountOptions`] and derives from its one field list what would
/// otherwise be written out per option: the overlay, the `-o` value types,
/// and [`ConnectionOptions`], the vault-connection and identity fields alone
/// (the flags of commands that connect to a vault but mount nothing).
macro_rules! mount_options {
    (
        $(#[$smeta:meta])*
        pub struct $name:ident {
            $( $(#[$lmeta:meta])* pub $l:ident : Option<$lt:ty>, )*
            connection $(#[$cdoc:meta])* $conn:ident {
                $( $(#[$cmeta:meta])* pub $c:ident : Option<$ct:ty>, )*
            }
            $( $(#[$fmeta:meta])* pub $f:ident : Option<$t:ty>, )*
        }
    ) => {
        $(#[$smeta])*
        pub struct $name {
            $( $(#[$lmeta])* pub $l: Option<$lt>, )*
            $( $(#[$cmeta])* pub $c: Option<$ct>, )*
            $( $(#[$fmeta])* pub $f: Option<$t>, )*
        }

        $(#[$cdoc])*
        #[derive(clap::Args, Clone, Debug, Default)]
        pub struct $conn {
            $( $(#[$cmeta])* pub $c: Option<$ct>, )*
        }

        impl From<$conn> for $name {
            fn from(c: $conn) -> $name {
                $name { $( $c: c.$c, )* ..$name::default() }
            }
        }

        impl $name {
            /// `over`'s fields win over `self`'s.
            pub fn overlay(self, over: $name) -> $name {
                $name {
                    $( $l: over.$l.or(self.$l), )*
                    $( $c: over.$c.or(self.$c), )*
                    $( $f: over.$f.or(self.$f), )*
                }
            }

            /// `-o key[=value]` as the TOML value of field `key`; `None` for
            /// a key that is no field (deserializing then names it).
            pub(super) fn option_value(key: &str, value: Option<&str>) -> Option<Result<toml::Value, super::ConfigError>> {
                match key {
                    $( stringify!($l) => Some(<$lt as OptionValue>::from_option(key, value)), )*
                    $( stringify!($c) => Some(<$ct as OptionValue>::from_option(key, value)), )*
                    $( stringify!($f) => Some(<$t as OptionValue>::from_option(key, value)), )*
                    _ => None,
                }
            }
        }
    };
}

mount_options! {
    /// One mount as flags, `-o` options or a config-file section: every field
    /// optional. [`MountOptions::validate`] applies defaults and checks every
    /// field, so the three sources share one set of rules and messages.
    #[derive(clap::Args, Clone, Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct MountOptions {
        /// The vault (a positional argument on the command line).
        #[arg(skip)]
        pub vault: Option<String>,
        /// The mountpoint (a positional argument on the command line).
        #[arg(skip)]
        pub path: Option<PathBuf>,

        connection
        /// The vault-connection and identity settings, alone.
        ConnectionOptions {
            /// Which identity to use. auto tries, in order: a client secret (AZURE_CLIENT_SECRET),
            /// workload identity (AZURE_FEDERATED_TOKEN_FILE), managed identity, the Azure CLI.
            /// [default: auto]
            #[arg(
                long,
                value_name = "AUTH",
                value_parser = auth_parser(),
                help_heading = "Authentication"
            )]
            pub auth: Option<String>,

            /// Client (application) id of the identity; for managed identity, a user-assigned identity.
            /// [default: AZURE_CLIENT_ID]
            #[arg(long, value_name = "ID", help_heading = "Authentication")]
            pub client_id: Option<String>,

            /// Entra tenant id. [default: AZURE_TENANT_ID]
            #[arg(long, value_name = "ID", help_heading = "Authentication")]
            pub tenant_id: Option<String>,

            /// Extra trusted root certificates, PEM (private CAs, TLS-inspecting proxies).
            /// [default: the system trust store only]
            #[arg(long, value_name = "PEM", help_heading = "Connection")]
            pub ca_file: Option<PathBuf>,

            /// Do not require the token challenge's resource to match the vault's domain.
            /// Needed for private endpoints with custom DNS names and for the emulator.
            #[arg(long, num_args = 0, default_missing_value = "true", help_heading = "Connection")]
            pub disable_challenge_resource_verification: Option<bool>,
        }

        /// Owner of every file and the directory. [default: the mounting user]
        #[arg(long, value_name = "N", help_heading = "Mount")]
        pub uid: Option<u32>,

        /// Group of every file and the directory. [default: the mounting user's group]
        #[arg(long, value_name = "N", help_heading = "Mount")]
        pub gid: Option<u32>,

        /// Mode of every secret file, octal. [default: 0400]
        #[arg(long, value_name = "MODE", help_heading = "Mount")]
        pub file_mode: Option<String>,

        /// Mode of the mount's root directory, octal. [default: 0500]
        #[arg(long, value_name = "MODE", help_heading = "Mount")]
        pub dir_mode: Option<String>,

        /// Let users other than the mounting user access the mount (mode bits still apply).
        #[arg(long, num_args = 0, default_missing_value = "true", help_heading = "Mount")]
        pub allow_other: Option<bool>,

        /// Let root read the mount besides the mounting user (a system service or container
        /// runtime reading a user's mount); every other user stays refused.
        #[arg(long, num_args = 0, default_missing_value = "true", help_heading = "Mount")]
        pub allow_root: Option<bool>,

        /// Mount even if the directory has files in it (they are hidden while mounted).
        /// [default: refuse a non-empty directory]
        #[arg(long, num_args = 0, default_missing_value = "true", help_heading = "Mount")]
        pub nonempty: Option<bool>,

        /// Memory budget of the value cache (LRU); least recently read values are evicted
        /// and wiped beyond it. [default: 64MiB]
        #[arg(long, value_name = "SIZE", help_heading = "Cache")]
        pub cache_bytes: Option<String>,

        /// How long a "not found" answer is remembered before asking the vault again. [default: 5s]
        #[arg(long, value_name = "DURATION", help_heading = "Cache")]
        pub negative_cache_ttl: Option<String>,

        /// How long a read with nothing cached may wait for the vault before failing with EIO.
        /// [default: 10s]
        #[arg(long, value_name = "DURATION", help_heading = "Cache")]
        pub fetch_timeout: Option<String>,

        /// Upper bound on vault GETs that lookups of names missing from the listing may cause in
        /// any 10 seconds (1 to 4000); beyond it such names are answered ENOENT. [default: 100]
        #[arg(long, value_name = "N", help_heading = "Cache")]
        pub max_cold_lookups_per_10s: Option<u32>,

        /// Vault GETs for values not in the cache that may run at once (1 to 256); further
        /// reads of uncached secrets wait for one to finish. [default: 16]
        #[arg(long, value_name = "N", help_heading = "Cache")]
        pub max_concurrent_fetches: Option<u32>,

        /// How often cached secrets are checked for new versions (jittered 0-10% shorter; at least 1s).
        /// A rotation becomes visible within about one interval. [default: 30s]
        #[arg(long, value_name = "DURATION", help_heading = "Refresh")]
        pub refresh_interval: Option<String>,

        /// Secrets not used for this long stop being refreshed and are evicted and wiped.
        /// [default: 10m]
        #[arg(long, value_name = "DURATION", help_heading = "Refresh")]
        pub idle_timeout: Option<String>,

        /// While the vault is unreachable or throttling, keep serving cached values this long
        /// after their last successful check; then fail closed. [default: 24h]
        #[arg(long, value_name = "DURATION", help_heading = "Refresh")]
        pub max_stale: Option<String>,

        /// Upper bound on the refresher's calls to the vault in any 10 seconds (1 to 4000). Key
        /// Vault allows 4,000 per vault across all clients; see docs/SCALING.md. [default: 50]
        #[arg(long, value_name = "N", help_heading = "Refresh")]
        pub max_requests_per_10s: Option<u32>,

        /// Longest time a cached value is served without a GET proving the identity may still
        /// read it; a 403 then removes it. Catches permission losses a listing cannot show.
        /// [default: 10m]
        #[arg(long, value_name = "DURATION", help_heading = "Refresh")]
        pub max_unverified: Option<String>,

        /// Route every open and read through the daemon (no kernel page cache across opens),
        /// so each open sees the daemon's current value and can be logged. 13 to 18 times
        /// slower than the default for open+read+close; see docs/BENCHMARKS.md.
        #[arg(long, num_args = 0, default_missing_value = "true", help_heading = "Refresh")]
        pub strict_open: Option<bool>,

        /// Follow change notices published by `akvfs watch`: configmap:<namespace>/<name>. A
        /// notice only decides when this node asks the vault; values and revocations still come
        /// from the node's own GETs. See docs/SCALING.md. [default: none, polling only]
        #[arg(long, value_name = "SOURCE", help_heading = "Refresh")]
        pub notice: Option<String>,

        /// Listing interval while change notices are live (heartbeat fresh); the refresh
        /// interval applies again when they are not. [default: 6h]
        #[arg(long, value_name = "DURATION", help_heading = "Refresh")]
        pub notice_poll_interval: Option<String>,

        /// A views file ([[view]] tables): an explicit list of files, each one secret,
        /// certificate part or key at a chosen path. See docs/CONFIGURATION.md.
        #[arg(long, value_name = "FILE", help_heading = "Views")]
        pub views: Option<PathBuf>,

        /// A SecretProviderClass manifest (or its objects string) whose objects become views.
        #[arg(long, value_name = "FILE", help_heading = "Views")]
        pub spc: Option<PathBuf>,

        /// What the root shows: vault (every secret, plus the views) or views (only the
        /// views). [default: views when any view is declared, else vault]
        #[arg(long, value_name = "ROOT", help_heading = "Views")]
        pub root: Option<String>,

        /// Views declared inline in a config file's [[mount.view]] tables.
        #[arg(skip)]
        pub view: Option<Vec<super::views::RawView>>,

        /// This node's name, which sets its place in a rotation's window.
        /// [default: NODE_NAME, else the host name]
        #[arg(long, value_name = "NAME", help_heading = "Refresh")]
        pub node_name: Option<String>,
    }
}

/// `--auth` takes the names of [`AuthMode`] (listed in `--help`) and keeps
/// them as written, for [`MountOptions::validate`].
fn auth_parser() -> impl clap::builder::TypedValueParser<Value = String> {
    use clap::builder::TypedValueParser;
    clap::builder::EnumValueParser::<AuthMode>::new().map(|m| m.as_str().to_string())
}
