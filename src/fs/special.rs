//! The entries beside the secrets that no secret name can collide with
//! (Key Vault names never contain `.`), reachable by path and not listed in
//! the root so that tree walkers do not fetch every certificate:
//!
//! - `.versions/<name>/<version>`: one file per version, immutable.
//! - `.certs/<name>/`: a directory bound to one version of a certificate
//!   (see `certs`), so a process that opens it once reads a matched pair.
//! - `.keys/<name>.pem`, `.keys/<name>.jwk`: a key's public part.
//!
//! Nodes bound to a secret version (version files, certificate directories
//! and their files) carry that version's [`SecretKey`], so the refresher's
//! rotation, revocation and staleness handling reaches them through
//! `bound_names`, `revoke_inodes` and `inodes_of` as it reaches secrets.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{lock, unix_time, Attr, DirEntry, Entry, FsCore, Kind, ReadData};
use crate::cache::SecretKey;
use crate::error::FsError;
use crate::secret::{SecretName, SecretProps, VersionId};
use crate::vault::{VaultError, VersionItem};

/// Special inodes live above this number; dynamic inodes stay below it.
pub const SPECIAL_BASE: u64 = 1 << 48;
pub const VERSIONS_INO: u64 = SPECIAL_BASE + 1;
pub const CERTS_INO: u64 = SPECIAL_BASE + 2;
pub const KEYS_INO: u64 = SPECIAL_BASE + 3;
const FIRST_DYNAMIC: u64 = SPECIAL_BASE + 16;

pub fn is_special(ino: u64) -> bool {
    ino > SPECIAL_BASE
}

/// What a special inode stands for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum What {
    /// `.versions/<name>`.
    VersionsOf(SecretName),
    /// `.versions/<name>/<version>`.
    Version(SecretKey),
    /// `.certs/<name>` as bound to one version.
    CertDir(SecretKey),
    /// A file in a certificate directory.
    CertFile(SecretKey, &'static str),
    /// `.keys/<name>.<ext>` of one key version.
    KeyFile(SecretName, VersionId, &'static str),
}

impl What {
    fn secret_key(&self) -> Option<&SecretKey> {
        match self {
            What::Version(k) | What::CertDir(k) | What::CertFile(k, _) => Some(k),
            _ => None,
        }
    }
}

pub(super) struct SNode {
    pub(super) what: What,
    pub(super) kind: Kind,
    pub(super) size: u64,
    pub(super) props: Option<Arc<SecretProps>>,
    pub(super) mtime: Option<i64>,
    lookups: u64,
    pub(super) revoked: Option<VaultError>,
}

/// A version listing and when it was fetched.
type VersionListing = (Instant, Arc<Vec<VersionItem>>);

/// The special namespace's state, inside [`FsCore`].
#[derive(Default)]
pub(crate) struct Special {
    nodes: std::sync::Mutex<Nodes>,
    /// Version listings, by name, with when they were fetched.
    pub(super) versions: std::sync::Mutex<HashMap<SecretName, VersionListing>>,
    /// Files of certificate versions read through their public part (the
    /// others are attached to their cached secret version).
    pub(super) certs: std::sync::Mutex<HashMap<SecretKey, Arc<super::certs::CertFiles>>>,
    /// Certificates read through their public part (the secret refused).
    pub(super) public_certs: std::sync::Mutex<HashMap<SecretName, super::certs::PublicCert>>,
    pub(super) keys: std::sync::Mutex<HashMap<SecretName, super::keys::KeyEntry>>,
    pub(super) key_names: std::sync::Mutex<Option<(Instant, Arc<Vec<SecretName>>)>>,
}

#[derive(Default)]
struct Nodes {
    by_ino: HashMap<u64, SNode>,
    by_what: HashMap<What, u64>,
    next: u64,
}

pub(super) fn fixed_dir(ino: u64) -> Option<&'static str> {
    match ino {
        VERSIONS_INO => Some(".versions"),
        CERTS_INO => Some(".certs"),
        KEYS_INO => Some(".keys"),
        _ => None,
    }
}

impl FsCore {
    pub(super) fn special_entry(&self, attr: Attr, ttl: Duration) -> Entry {
        Entry {
            attr,
            entry_ttl: ttl,
            attr_ttl: ttl.min(self.timings.attr_ttl),
        }
    }

    /// Binds `what` to an inode (the same one while the kernel holds it)
    /// and counts a lookup.
    pub(super) fn bind_special(
        &self,
        what: What,
        kind: Kind,
        size: u64,
        props: Option<Arc<SecretProps>>,
        mtime: Option<i64>,
    ) -> Attr {
        let mut nodes = lock(&self.special.nodes);
        let ino = match nodes.by_what.get(&what).copied() {
            Some(ino) => ino,
            None => {
                nodes.next += 1;
                let ino = FIRST_DYNAMIC + nodes.next;
                nodes.by_what.insert(what.clone(), ino);
                ino
            }
        };
        let node = nodes.by_ino.entry(ino).or_insert(SNode {
            what,
            kind,
            size,
            props,
            mtime,
            lookups: 0,
            revoked: None,
        });
        node.lookups += 1;
        node.revoked = None;
        self.special_attr(ino, node)
    }

    fn special_attr(&self, ino: u64, node: &SNode) -> Attr {
        let mut attr = self.root_attr();
        let t = unix_time(node.mtime, self.mounted_at);
        attr.ino = ino;
        attr.kind = node.kind;
        attr.mtime = t;
        attr.ctime = t;
        attr.crtime = t;
        if node.kind == Kind::File {
            attr.size = node.size;
            attr.perm = self.owner.file_mode;
            attr.nlink = 1;
        }
        attr
    }

    /// A lookup in or of the special namespace, or `None` for the root's
    /// own names.
    pub(super) async fn special_lookup(
        &self,
        parent: u64,
        name: &OsStr,
    ) -> Option<Result<Entry, FsError>> {
        let name = name.to_str();
        if parent == super::ROOT_INO {
            let ino = match name? {
                ".versions" => VERSIONS_INO,
                ".certs" => CERTS_INO,
                ".keys" => KEYS_INO,
                _ => return None,
            };
            let mut attr = self.root_attr();
            attr.ino = ino;
            return Some(Ok(self.special_entry(attr, self.timings.entry_ttl)));
        }
        let Some(name) = name else {
            return Some(Err(FsError::NoEntry));
        };
        Some(match parent {
            VERSIONS_INO => self.lookup_versions_dir(name),
            CERTS_INO => self.lookup_cert_dir(name).await,
            KEYS_INO => self.lookup_key_file(name).await,
            _ => {
                let what = lock(&self.special.nodes)
                    .by_ino
                    .get(&parent)
                    .map(|n| (n.what.clone(), n.revoked.clone()));
                match what {
                    Some((_, Some(err))) => {
                        let n = self.special_name(parent);
                        Err(self.vault_err(&n, err))
                    }
                    Some((What::VersionsOf(secret), None)) => {
                        self.lookup_version_file(&secret, name).await
                    }
                    Some((What::CertDir(key), None)) => self.lookup_cert_file(&key, name).await,
                    Some(_) => Err(FsError::NotDir),
                    None => Err(FsError::NoEntry),
                }
            }
        })
    }

    fn special_name(&self, ino: u64) -> SecretName {
        let nodes = lock(&self.special.nodes);
        match nodes.by_ino.get(&ino).map(|n| &n.what) {
            Some(What::VersionsOf(n)) | Some(What::KeyFile(n, _, _)) => n.clone(),
            Some(w) => w
                .secret_key()
                .map(|k| k.name.clone())
                .unwrap_or_else(unknown),
            None => unknown(),
        }
    }

    pub(super) fn special_forget(&self, ino: u64, n: u64) {
        let mut nodes = lock(&self.special.nodes);
        let gone = nodes.by_ino.get_mut(&ino).is_some_and(|node| {
            node.lookups = node.lookups.saturating_sub(n);
            node.lookups == 0
        });
        if gone {
            if let Some(node) = nodes.by_ino.remove(&ino) {
                nodes.by_what.remove(&node.what);
                if let What::CertDir(key) = &node.what {
                    // Nothing can reach these files by a new lookup now.
                    lock(&self.special.certs).remove(key);
                }
            }
        }
    }

    pub(super) fn special_getattr(&self, ino: u64) -> Result<(Attr, Duration), FsError> {
        if fixed_dir(ino).is_some() {
            let mut attr = self.root_attr();
            attr.ino = ino;
            return Ok((attr, self.timings.attr_ttl));
        }
        let nodes = lock(&self.special.nodes);
        let node = nodes.by_ino.get(&ino).ok_or(FsError::NoEntry)?;
        Ok((self.special_attr(ino, node), self.timings.attr_ttl))
    }

    pub(super) async fn special_read(
        &self,
        ino: u64,
        offset: u64,
        size: u32,
    ) -> Result<ReadData, FsError> {
        if fixed_dir(ino).is_some() {
            return Err(FsError::IsDir);
        }
        let (what, revoked) = {
            let nodes = lock(&self.special.nodes);
            let n = nodes.by_ino.get(&ino).ok_or(FsError::NoEntry)?;
            (n.what.clone(), n.revoked.clone())
        };
        if let Some(err) = revoked {
            return Err(self.vault_err(&self.special_name(ino), err));
        }
        let src: Arc<dyn super::Bytes> = match &what {
            What::Version(key) => {
                let s = self
                    .cache
                    .version(key)
                    .await
                    .map_err(|e| self.vault_err(&key.name, e))?;
                self.note_use(&s);
                s
            }
            What::CertFile(key, part) => self.cert_part(key, part).await?,
            What::KeyFile(name, version, ext) => self.key_part(name, version, ext).await?,
            What::VersionsOf(_) | What::CertDir(_) => return Err(FsError::IsDir),
        };
        Ok(ReadData::new(src, offset, size))
    }

    /// Opens a special directory: a snapshot of its entries.
    pub(super) async fn special_opendir(&self, ino: u64) -> Result<Vec<DirEntry>, FsError> {
        let names: Vec<(String, Kind)> = match ino {
            VERSIONS_INO => self
                .listing()
                .await?
                .iter()
                .map(|s| (s.name.to_string(), Kind::Directory))
                .collect(),
            CERTS_INO => self
                .listing()
                .await?
                .iter()
                .filter(|s| s.managed)
                .map(|s| (s.name.to_string(), Kind::Directory))
                .collect(),
            KEYS_INO => self.key_dir_entries().await?,
            _ => {
                let what = lock(&self.special.nodes)
                    .by_ino
                    .get(&ino)
                    .map(|n| n.what.clone());
                match what {
                    Some(What::VersionsOf(name)) => self
                        .version_list(&name, true)
                        .await?
                        .iter()
                        .map(|v| (v.version.to_string(), Kind::File))
                        .collect(),
                    Some(What::CertDir(key)) => self.cert_dir_entries(&key).await?,
                    Some(_) => return Err(FsError::NotDir),
                    None => return Err(FsError::NoEntry),
                }
            }
        };
        let mut entries = vec![
            DirEntry {
                ino,
                kind: Kind::Directory,
                name: ".".into(),
            },
            DirEntry {
                ino: super::ROOT_INO,
                kind: Kind::Directory,
                name: "..".into(),
            },
        ];
        // d_ino of entries not yet looked up: a number no inode uses.
        entries.extend(
            names
                .into_iter()
                .enumerate()
                .map(|(i, (name, kind))| DirEntry {
                    ino: SPECIAL_BASE - 1 - i as u64,
                    kind,
                    name,
                }),
        );
        Ok(entries)
    }

    pub(super) fn special_props(
        &self,
        ino: u64,
    ) -> Result<(Option<Arc<SecretProps>>, What), FsError> {
        let nodes = lock(&self.special.nodes);
        let n = nodes.by_ino.get(&ino).ok_or(FsError::NoEntry)?;
        Ok((n.props.clone(), n.what.clone()))
    }
}

fn unknown() -> SecretName {
    SecretName::parse("unknown").unwrap_or_else(|| unreachable!("a valid literal name"))
}

mod track;

#[cfg(test)]
#[path = "special_certs_tests.rs"]
mod certs_tests;
#[cfg(test)]
#[path = "special_tests.rs"]
mod tests;
