//! The filesystem's error type and its one mapping to errno.
//!
//! Every error a FUSE request can end with is an [`FsError`]; [`FsError::errno`]
//! is the only place that decides which errno a user sees, and
//! [`FsError::log_level_is_quiet`] decides whether it is worth a warning.

use crate::secret::SecretName;
use crate::vault::VaultError;

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// A name that cannot exist in Key Vault, or an unknown inode.
    #[error("no such file")]
    NoEntry,
    #[error("the mount is read-only")]
    ReadOnly,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("no such extended attribute")]
    NoAttr,
    #[error("buffer too small for the attribute")]
    Range,
    #[error("secret {name} in {vault}: {source}")]
    Vault {
        vault: String,
        name: SecretName,
        #[source]
        source: VaultError,
    },
    /// Certificate or key material the vault returned cannot be converted.
    #[error("certificate or key {name} in {vault}: {source}")]
    Object {
        vault: String,
        name: SecretName,
        #[source]
        source: crate::objects::ObjectError,
    },
    /// A view's file cannot be derived from the object's value (it does
    /// not decode, or its JSON lacks the pointer). Names the view, the
    /// secret and what to check, never the value.
    #[error("view {view}: secret {name} in {vault}: {problem}")]
    View {
        view: String,
        vault: String,
        name: SecretName,
        /// Boxed: rare, and it keeps every `FsError` small.
        problem: Box<ViewBytesError>,
    },
    /// A bug caught before it could end the FUSE session.
    #[error("internal error while answering the request (please report this)")]
    Internal,
    #[error("listing {vault}: {source}")]
    List {
        vault: String,
        #[source]
        source: VaultError,
    },
}

/// Why a view's file cannot be derived from its object's value. Says what
/// did not fit and what to check, never what the value holds.
#[derive(Debug, thiserror::Error)]
pub enum ViewBytesError {
    /// A certificate's secret that does not convert to PEM.
    #[error("{0}")]
    Certificate(#[source] crate::objects::ObjectError),
    #[error("the value is not valid base64 (encoding = base64); check how the secret was stored")]
    NotBase64,
    #[error("the value is not valid hex (encoding = hex); check how the secret was stored")]
    NotHex,
    #[error("the value is not JSON (line {line}, column {column}), so json_pointer {pointer:?} cannot apply")]
    NotJson {
        line: usize,
        column: usize,
        pointer: String,
    },
    #[error("json_pointer {pointer:?} does not match any field of the value; check the pointer (RFC 6901: /a/0/b, ~1 for /, ~0 for ~)")]
    NoField { pointer: String },
    #[error("json_pointer {pointer:?}: the field cannot be written as JSON")]
    Unwritable { pointer: String },
}

impl FsError {
    /// The errno for this error. This match is the whole policy; SEMANTICS.md
    /// documents it.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NoEntry => libc::ENOENT,
            FsError::ReadOnly => libc::EROFS,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::NoAttr => libc::ENODATA,
            FsError::Range => libc::ERANGE,
            FsError::Internal | FsError::View { .. } => libc::EIO,
            FsError::Object { source, .. } => match source {
                crate::objects::ObjectError::NotCertificate(_) => libc::ENOENT,
                crate::objects::ObjectError::UnsupportedKey(_) => libc::EOPNOTSUPP,
                _ => libc::EIO,
            },
            FsError::Vault { source, .. } | FsError::List { source, .. } => match source {
                VaultError::NotFound => libc::ENOENT,
                VaultError::Disabled | VaultError::Forbidden { .. } | VaultError::Auth(_) => {
                    libc::EACCES
                }
                VaultError::IdentityRejected(_) => libc::EACCES,
                VaultError::Throttled { .. }
                | VaultError::Timeout(_)
                | VaultError::Unavailable(_)
                | VaultError::BadResponse(_) => libc::EIO,
            },
        }
    }

    /// Errors that are ordinary answers (a name that is not there, a missing
    /// xattr) are logged at debug; the rest at warn.
    pub fn log_level_is_quiet(&self) -> bool {
        matches!(
            self,
            FsError::NoEntry
                | FsError::NoAttr
                | FsError::Range
                | FsError::ReadOnly
                | FsError::NotDir
                | FsError::IsDir
                | FsError::Vault {
                    source: VaultError::NotFound,
                    ..
                }
        )
    }
}
