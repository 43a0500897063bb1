//! Where a mount's views come from: `[[mount.view]]` tables, a views file
//! (`views = FILE`) and a SecretProviderClass (`spc = FILE`), gathered and
//! checked as one set; and the `root` setting.

use std::path::Path;

use super::field_error::{FieldError, Problem};
use super::views::{validate_views, RawView, ViewRoot, ViewSpec};
use super::views_error::ViewSourceError;

/// A views file: `[[view]]` tables.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ViewsFile {
    #[serde(default)]
    pub(super) view: Vec<RawView>,
}

/// Reads a views file (`[[view]]` tables, the fields of [`RawView`]).
pub fn load_views_file(path: &Path) -> Result<Vec<RawView>, ViewSourceError> {
    let text = std::fs::read_to_string(path).map_err(|source| ViewSourceError::ViewsFileRead {
        path: path.to_path_buf(),
        source,
    })?;
    let file: ViewsFile = toml::from_str(&text).map_err(|e| ViewSourceError::ViewsFileSyntax {
        path: path.to_path_buf(),
        line: e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1),
        message: e.message().to_string(),
    })?;
    if file.view.is_empty() {
        return Err(ViewSourceError::ViewsFileEmpty {
            path: path.to_path_buf(),
        });
    }
    Ok(file.view)
}

/// Parses `vault` or `views` for the `root` setting.
pub fn parse_root(s: &str) -> Result<ViewRoot, ViewSourceError> {
    match s {
        "vault" => Ok(ViewRoot::Vault),
        "views" => Ok(ViewRoot::Views),
        _ => Err(ViewSourceError::Root { value: s.into() }),
    }
}

/// The views of a mount, from inline tables, a views file and a
/// SecretProviderClass, checked as one set; and what the root shows.
pub(super) fn views_config(
    inline: Vec<RawView>,
    file: Option<&std::path::Path>,
    spc: Option<&std::path::Path>,
    root: Option<&str>,
    vault_url: &str,
) -> Result<(Vec<ViewSpec>, ViewRoot), FieldError> {
    let mut raw = inline;
    if let Some(f) = file {
        raw.extend(load_views_file(f).map_err(|e| FieldError::new("views", e))?);
    }
    if let Some(f) = spc {
        raw.extend(super::spc::load_spc_file(f).map_err(|e| FieldError::new("spc", e))?);
    }
    let views = validate_views(raw, vault_url).map_err(|e| FieldError::new("view", e))?;
    // Declared views are an allow-list unless the root is asked for: a
    // migration from the CSI driver expects only the listed files, and
    // should not expose every other secret the identity can read.
    let root = match root {
        Some(r) => parse_root(r).map_err(|e| FieldError::new("root", e))?,
        None if views.is_empty() => ViewRoot::Vault,
        None => ViewRoot::Views,
    };
    if root == ViewRoot::Views && views.is_empty() {
        return Err(FieldError::new("root", Problem::RootWithoutViews));
    }
    Ok((views, root))
}

#[cfg(test)]
#[path = "view_sources_tests.rs"]
mod tests;
