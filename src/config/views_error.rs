//! Why views cannot be used: a bad path, a bad field of one view, a clash
//! between views, or a views file or SecretProviderClass that cannot be
//! read. Each message names the view (its path or name, or its position)
//! and the field, and says what the value should look like. Paths, names
//! and settings are quoted; values of secrets never reach these types.

use std::path::PathBuf;

use super::views::{MAX_PATH, MAX_VAULTS, MAX_VIEWS};

/// A view path that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path is empty")]
    Empty,
    #[error("path is longer than {MAX_PATH} bytes")]
    TooLong,
    #[error("path {0:?} is absolute; write it relative to the mount")]
    Absolute(String),
    #[error("path {0:?} has an empty component (// or a trailing /)")]
    EmptyComponent(String),
    #[error("path {0:?} may not contain . or ..")]
    Dots(String),
    #[error("path {0:?} has a component that is too long or holds control characters")]
    BadComponent(String),
    #[error("path {path:?} collides with the mount's {dir} directory")]
    Reserved { path: String, dir: String },
}

/// A view, or the set of a mount's views, that cannot be used. `view` is
/// the view as named in messages (`view "db/password"`, `view #3`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    #[error("{count} views; at most {MAX_VIEWS} are allowed")]
    TooMany { count: usize },
    /// One field of one view, with what is wrong with it.
    #[error("{view}: {field}: {problem}")]
    Field {
        view: String,
        field: &'static str,
        problem: String,
    },
    #[error("{view}: path: {source}")]
    Path { view: String, source: PathError },
    #[error("{view}: path: {dir:?} is a file or version history of another view and cannot also hold views")]
    NotADirectory { view: String, dir: String },
    #[error("{view}: path: {path:?} is a directory holding other views")]
    HoldsViews { view: String, path: String },
    #[error("{view}: path: {path:?} is declared twice")]
    Duplicate { view: String, path: String },
    #[error("{view}: vault: {vault} is one vault too many: a mount reads from at most {MAX_VAULTS} vaults (its own and {} more); declare another mount for the rest", MAX_VAULTS - 1)]
    TooManyVaults { view: String, vault: String },
}

impl ViewError {
    pub(super) fn field(view: &str, field: &'static str, problem: impl Into<String>) -> ViewError {
        ViewError::Field {
            view: view.to_string(),
            field,
            problem: problem.into(),
        }
    }
}

/// A views file, a SecretProviderClass or the `root` setting that cannot be
/// used. `file` names the file (`SecretProviderClass file /etc/app.yaml`).
#[derive(Debug, thiserror::Error)]
pub enum ViewSourceError {
    #[error("cannot read views file {}: {source}", path.display())]
    ViewsFileRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("views file {}{}: {message}", path.display(), line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    ViewsFileSyntax {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error("views file {}: no [[view]] tables; add at least one with path and name", path.display())]
    ViewsFileEmpty { path: PathBuf },
    #[error("{value:?} is not vault (every secret plus the views) or views (only the views)")]
    Root { value: String },
    #[error("cannot read SecretProviderClass file {}: {source}", path.display())]
    SpcRead {
        path: PathBuf,
        source: std::io::Error,
    },
    /// YAML that does not parse or fit; `reason` is the parser's first
    /// line (location and reason), never the document.
    #[error("{file}{}: {reason}", part.as_deref().map(|p| format!(": {p}")).unwrap_or_default())]
    SpcYaml {
        file: String,
        /// `objects`, `objects entry #2`, or none for the manifest.
        part: Option<String>,
        reason: String,
    },
    #[error("{file}: kind is {kind:?}, not SecretProviderClass")]
    SpcKind { file: String, kind: String },
    #[error("{file}: no spec.parameters.objects")]
    SpcNoObjects { file: String },
    #[error("{file}: spec.provider is {provider:?}, not azure")]
    SpcProvider { file: String, provider: String },
    #[error("{file}: spec.parameters.{parameter} is not supported (akvfs reads keyvaultName and objects; the identity comes from its own settings)")]
    SpcParameter { file: String, parameter: String },
    #[error("{file}: objects entry #{entry}: an object cannot name a vault; keyvaultName of the class applies to every object (for objects of several vaults, declare views with vault = in a views file or [[mount.view]])")]
    SpcObjectVault { file: String, entry: usize },
    #[error("{file}: objects entry #{entry}: objectName is required")]
    SpcObjectName { file: String, entry: usize },
    #[error(
        "{file}: objects entry #{entry} ({name}): objectType is required (secret, cert or key)"
    )]
    SpcObjectType {
        file: String,
        entry: usize,
        name: String,
    },
    #[error("{file}: objects entry #{entry} ({name}): objectVersionHistory {value:?} is not a whole number")]
    SpcHistory {
        file: String,
        entry: usize,
        name: String,
        value: String,
    },
}
