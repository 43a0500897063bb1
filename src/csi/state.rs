//! The state directory: what must survive a restart of the plugin, and never a token or a value.
//!
//! ```text
//! STATE/targets/<digest of target path>.json   one published target: its identity key,
//!                                               vault, identity, group and options
//! STATE/mounts/<identity key>/                  where that identity's FUSE mount lives
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::CsiError;

/// One published target, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TargetRecord {
    pub target: PathBuf,
    pub volume_id: String,
    /// The identity mount's key ([`identity_key`]).
    pub key: String,
    pub vault_url: String,
    pub tenant_id: String,
    pub client_id: String,
    pub subject: String,
    pub group: Option<u32>,
    pub options: BTreeMap<String, String>,
}

/// The key of an identity mount: a digest of everything that makes two
/// mounts different (identity, vault, owner group, options), usable as a
/// directory name and as a metrics label without naming anyone.
pub fn identity_key(
    tenant_id: &str,
    client_id: &str,
    subject: &str,
    vault_url: &str,
    group: Option<u32>,
    options: &BTreeMap<String, String>,
) -> String {
    let text = serde_json::json!([
        tenant_id.to_ascii_lowercase(),
        client_id.to_ascii_lowercase(),
        subject,
        vault_url.to_ascii_lowercase(),
        group,
        options
    ])
    .to_string();
    digest(text.as_bytes())
}

/// Hex SHA-256, shortened to 32 characters (128 bits).
pub fn digest(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The plugin's state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Creates (mode 0700) or opens the directory and its two subdirectories.
    pub fn open(root: &Path) -> Result<StateDir, crate::service::Error> {
        for dir in [
            root.to_path_buf(),
            root.join("targets"),
            root.join("mounts"),
        ] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|source| crate::service::Error::StateDir {
                    dir: dir.clone(),
                    action: "create",
                    source,
                })?;
        }
        let root =
            std::fs::canonicalize(root).map_err(|source| crate::service::Error::StateDir {
                dir: root.to_path_buf(),
                action: "resolve",
                source,
            })?;
        Ok(StateDir { root })
    }

    /// Where the identity mount with `key` is mounted.
    pub fn mount_dir(&self, key: &str) -> PathBuf {
        self.root.join("mounts").join(key)
    }

    fn record_path(&self, target: &Path) -> PathBuf {
        let name = digest(target.as_os_str().as_encoded_bytes());
        self.root.join("targets").join(format!("{name}.json"))
    }

    /// Records a target (replacing it atomically).
    pub fn save(&self, record: &TargetRecord) -> Result<(), CsiError> {
        let path = self.record_path(&record.target);
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_vec_pretty(record).map_err(|source| CsiError::StateEncode {
            target: record.target.clone(),
            source,
        })?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|source| CsiError::StateWrite { path, source })
    }

    /// The record of `target`, if any.
    pub fn find(&self, target: &Path) -> Option<TargetRecord> {
        let text = std::fs::read(self.record_path(target)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Forgets `target`.
    pub fn remove(&self, target: &Path) {
        let _ = std::fs::remove_file(self.record_path(target));
    }

    /// Every recorded target; unreadable files are skipped with a warning.
    pub fn load(&self) -> Vec<TargetRecord> {
        let Ok(dir) = std::fs::read_dir(self.root.join("targets")) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in dir.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match std::fs::read(&path)
                .ok()
                .and_then(|t| serde_json::from_slice(&t).ok())
            {
                Some(r) => out.push(r),
                None => tracing::warn!(file = %path.display(), "ignoring an unreadable state file"),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_keys_separate_identities() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("state")).unwrap();
        let opts = BTreeMap::new();
        let a = identity_key(
            "t",
            "c",
            "system:serviceaccount:a:a",
            "https://v",
            None,
            &opts,
        );
        let b = identity_key(
            "t",
            "c",
            "system:serviceaccount:b:b",
            "https://v",
            None,
            &opts,
        );
        let g = identity_key(
            "t",
            "c",
            "system:serviceaccount:a:a",
            "https://v",
            Some(5),
            &opts,
        );
        assert_ne!(a, b);
        assert_ne!(a, g);
        let rec = TargetRecord {
            target: "/pods/x/mount".into(),
            volume_id: "v".into(),
            key: a.clone(),
            vault_url: "https://v".into(),
            tenant_id: "t".into(),
            client_id: "c".into(),
            subject: "system:serviceaccount:a:a".into(),
            group: None,
            options: opts,
        };
        state.save(&rec).unwrap();
        assert_eq!(state.find(Path::new("/pods/x/mount")), Some(rec.clone()));
        assert_eq!(state.load(), vec![rec]);
        state.remove(Path::new("/pods/x/mount"));
        assert!(state.load().is_empty());
    }
}
