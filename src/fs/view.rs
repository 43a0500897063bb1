//! Views: files declared one by one (see `config::views`), each showing one
//! object of the vault at a chosen path, in directories made from the
//! paths. With `root = views` they are the whole mount: no other name
//! resolves and the root lists only them.
//!
//! The directories are fixed when the mount starts and keep their inodes.
//! A view's file is bound, like a secret's, to one version: its inode holds
//! the bytes derived from that version (decoded, picked from JSON, a
//! certificate part, a key's public part) in locked memory, so reads never
//! wait on the vault and an open file never changes. A rotation binds the
//! path to a new inode; the refresher reaches view inodes through
//! `inodes_of`, `revoke_inodes` and `bound_names` as it reaches secrets, and
//! the kernel notifier drops view paths through [`FsCore::view_dentries_of`].
//! A version history directory is bound to the newest version when looked
//! up, with its `0..N-1` fixed from that moment.
//!
//! Views of other vaults: the mount's core holds the tree and serves every
//! view inode, but a view is resolved by the core of its vault (one per
//! vault, each with its own value cache, key and certificate state and
//! refresher, built by `service::vaults`); those cores share the tree and
//! each refreshes, revokes and invalidates only its own vault's views. So
//! the data path stays vault-agnostic, and no view is ever resolved from,
//! or revoked by, another vault's cache.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::sync::{Arc, Mutex};

use super::{lock, Bytes, DirEntry, Entry, FsCore, Kind, ROOT_INO};
use crate::cache::SecretKey;
use crate::config::{ViewRoot, ViewSpec};
use crate::error::FsError;
use crate::secret::{SecretName, SecretProps, VersionId};
use crate::vault::VaultError;

/// View directories' inodes start here, below the special namespace.
pub const VIEW_BASE: u64 = 1 << 47;
/// Bound view files and history directories are numbered from here.
pub(super) const VIEW_DYNAMIC: u64 = VIEW_BASE + (1 << 32);

/// Whether `ino` belongs to the view tree.
pub fn is_view(ino: u64) -> bool {
    (VIEW_BASE..super::special::SPECIAL_BASE).contains(&ino)
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Child {
    Dir(usize),
    View(usize),
}

pub(super) struct Dir {
    pub(super) ino: u64,
    pub(super) parent: u64,
    pub(super) children: BTreeMap<String, Child>,
}

/// What a bound view node stands for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum VWhat {
    /// View `.0`'s file, from one secret version.
    File(usize, SecretKey),
    /// A key view's file, from one key version.
    Key(usize, VersionId),
    /// A version history directory, bound when its newest was `.1`.
    History(usize, VersionId),
}

impl VWhat {
    pub(super) fn view(&self) -> usize {
        match self {
            VWhat::File(i, _) | VWhat::Key(i, _) | VWhat::History(i, _) => *i,
        }
    }
}

/// A view file or history directory as resolved, before binding.
pub(super) struct Resolved {
    pub(super) what: VWhat,
    pub(super) bytes: Option<Arc<dyn Bytes>>,
    pub(super) props: Option<Arc<SecretProps>>,
    pub(super) mtime: Option<i64>,
    /// A history directory's versions, newest first.
    pub(super) history: Option<Arc<Vec<SecretKey>>>,
}

pub(super) struct VNode {
    pub(super) r: Resolved,
    /// The file's size, kept when revocation drops the bytes so the kernel
    /// still asks (and is refused) instead of reading an empty file.
    pub(super) size: u64,
    pub(super) lookups: u64,
    pub(super) revoked: Option<VaultError>,
}

#[derive(Default)]
pub(super) struct VNodes {
    pub(super) by_ino: HashMap<u64, VNode>,
    pub(super) by_what: HashMap<VWhat, u64>,
    pub(super) next: u64,
}

/// The view tree of a mount, shared by the cores of every vault it reads.
pub(crate) struct Views {
    pub(super) specs: Vec<ViewSpec>,
    /// Each view's vault: 0 the mount's own, `k` the core `others[k - 1]`.
    pub(super) vault_of: Vec<usize>,
    pub(super) only: bool,
    pub(super) dirs: Vec<Dir>,
    /// Each view's directory inode.
    pub(super) parents: Vec<u64>,
    pub(super) nodes: Mutex<VNodes>,
    /// Optional views whose object was missing at their last lookup: left
    /// out of listings, as their files are absent.
    pub(super) absent: Mutex<BTreeSet<usize>>,
}

/// A core's place in the view tree: the tree, which vault this core
/// resolves, and (for the mount's own core) the cores of the other vaults.
pub(crate) struct ViewsHere {
    tree: Arc<Views>,
    vault: usize,
    others: Vec<Arc<FsCore>>,
}

impl Views {
    pub(crate) fn new(specs: Vec<ViewSpec>, root: ViewRoot, others: &[Arc<FsCore>]) -> Views {
        // A vault no core serves resolves to an internal error, never to
        // another vault's cache.
        let vault_of = specs
            .iter()
            .map(|s| match &s.vault {
                None => 0,
                Some(url) => others
                    .iter()
                    .position(|c| &c.vault_url == url)
                    .map_or(usize::MAX, |k| k + 1),
            })
            .collect();
        let mut dirs = vec![Dir {
            ino: ROOT_INO,
            parent: ROOT_INO,
            children: BTreeMap::new(),
        }];
        let mut parents = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let Some((last, within)) = spec.path.split_last() else {
                parents.push(ROOT_INO);
                continue;
            };
            let mut d = 0;
            for comp in within {
                d = match dirs[d].children.get(comp) {
                    Some(Child::Dir(x)) => *x,
                    _ => {
                        let x = dirs.len();
                        let parent = dirs[d].ino;
                        dirs.push(Dir {
                            ino: VIEW_BASE + x as u64,
                            parent,
                            children: BTreeMap::new(),
                        });
                        dirs[d].children.insert(comp.clone(), Child::Dir(x));
                        x
                    }
                };
            }
            dirs[d].children.insert(last.clone(), Child::View(i));
            parents.push(dirs[d].ino);
        }
        Views {
            specs,
            vault_of,
            only: root == ViewRoot::Views,
            dirs,
            parents,
            nodes: Mutex::new(VNodes::default()),
            absent: Mutex::new(BTreeSet::new()),
        }
    }

    pub(super) fn dir_index(&self, ino: u64) -> Option<usize> {
        if ino == ROOT_INO {
            return Some(0);
        }
        let i = ino.checked_sub(VIEW_BASE)? as usize;
        (i > 0 && i < self.dirs.len()).then_some(i)
    }

    /// Whether the root shows only views.
    pub(crate) fn only(&self) -> bool {
        self.only
    }

    /// The root's view entries (names at the top of view paths).
    pub(super) fn root_entries(&self) -> Vec<DirEntry> {
        self.entries(0).into_iter().skip(2).collect()
    }

    pub(super) fn entries(&self, d: usize) -> Vec<DirEntry> {
        let dir = &self.dirs[d];
        let mut out = vec![
            DirEntry {
                ino: dir.ino,
                kind: Kind::Directory,
                name: ".".into(),
            },
            DirEntry {
                ino: dir.parent,
                kind: Kind::Directory,
                name: "..".into(),
            },
        ];
        let absent = lock(&self.absent).clone();
        out.extend(
            dir.children
                .iter()
                .filter(|(_, c)| !matches!(c, Child::View(i) if absent.contains(i)))
                .map(|(name, c)| match *c {
                    Child::Dir(x) => DirEntry {
                        ino: self.dirs[x].ino,
                        kind: Kind::Directory,
                        name: name.clone(),
                    },
                    // d_ino of a file not looked up yet: a number no inode uses.
                    Child::View(i) => DirEntry {
                        ino: VIEW_BASE - 1 - i as u64,
                        kind: if self.specs[i].history.is_some() {
                            Kind::Directory
                        } else {
                            Kind::File
                        },
                        name: name.clone(),
                    },
                }),
        );
        out
    }
}

impl FsCore {
    /// Installs the mount's views, all of the mount's own vault; once,
    /// before the mount serves.
    #[cfg(test)]
    pub fn set_views(&self, specs: Vec<ViewSpec>, root: ViewRoot) {
        self.set_views_with(specs, root, Vec::new());
    }

    /// Installs the mount's views with the cores of the other vaults they
    /// read from (`others`, one per vault); once, before the mount serves.
    /// Each of those cores resolves, refreshes and revokes its own views.
    pub fn set_views_with(&self, specs: Vec<ViewSpec>, root: ViewRoot, others: Vec<Arc<FsCore>>) {
        if specs.is_empty() && root == ViewRoot::Vault {
            return;
        }
        let tree = Arc::new(Views::new(specs, root, &others));
        for (k, other) in others.iter().enumerate() {
            let _ = other.views.set(ViewsHere {
                tree: Arc::clone(&tree),
                vault: k + 1,
                others: Vec::new(),
            });
        }
        let _ = self.views.set(ViewsHere {
            tree,
            vault: 0,
            others,
        });
    }

    pub(super) fn views(&self) -> Option<&Views> {
        self.views.get().map(|h| &*h.tree)
    }

    /// Whether view `i` reads from this core's vault.
    pub(super) fn is_mine(&self, i: usize) -> bool {
        self.views
            .get()
            .is_some_and(|h| h.tree.vault_of.get(i) == Some(&h.vault))
    }

    /// The core that resolves view `i`: this one for its own vault's views,
    /// the other vault's core otherwise.
    pub(super) fn owner(&self, i: usize) -> Result<&FsCore, FsError> {
        let h = self.views.get().ok_or(FsError::Internal)?;
        let k = *h.tree.vault_of.get(i).ok_or(FsError::Internal)?;
        if k == h.vault {
            return Ok(self);
        }
        match k.checked_sub(1).and_then(|k| h.others.get(k)) {
            Some(core) => Ok(core),
            None => Err(FsError::Internal),
        }
    }

    pub(super) fn view_err(
        &self,
        i: usize,
        name: &SecretName,
        problem: crate::error::ViewBytesError,
    ) -> FsError {
        let shown = self.views().map(|v| v.specs[i].shown()).unwrap_or_default();
        FsError::View {
            view: shown,
            vault: self.vault_url.clone(),
            name: name.clone(),
            problem: Box::new(problem),
        }
    }

    /// A lookup in a view directory, or `None` when `parent` is the root of
    /// a mount that also shows the vault and `name` is no view.
    pub(super) async fn view_lookup(
        &self,
        parent: u64,
        name: &OsStr,
    ) -> Option<Result<Entry, FsError>> {
        let v = self.views()?;
        if let Some(d) = v.dir_index(parent) {
            let child = name
                .to_str()
                .and_then(|n| v.dirs[d].children.get(n))
                .copied();
            return match child {
                Some(Child::Dir(x)) => Some(Ok(
                    self.special_entry(self.view_dir_attr(v.dirs[x].ino), self.timings.entry_ttl)
                )),
                Some(Child::View(i)) => Some(self.lookup_view(i).await),
                None if d == 0 && !v.only => None,
                None => Some(Err(FsError::NoEntry)),
            };
        }
        if !is_view(parent) {
            return None;
        }
        Some(self.lookup_history_entry(parent, name).await)
    }

    async fn lookup_view(&self, i: usize) -> Result<Entry, FsError> {
        let resolved = self.owner(i)?.resolve_view(i).await?;
        let ttl = match resolved.what {
            VWhat::Key(..) => self.timings.entry_ttl.min(super::REREAD_AFTER),
            _ => self.timings.entry_ttl,
        };
        let attr = self.bind_view(resolved);
        Ok(self.special_entry(attr, ttl))
    }

    async fn lookup_history_entry(&self, parent: u64, name: &OsStr) -> Result<Entry, FsError> {
        let (i, keys, revoked) = {
            let v = self.views().ok_or(FsError::NoEntry)?;
            let nodes = lock(&v.nodes);
            let n = nodes.by_ino.get(&parent).ok_or(FsError::NoEntry)?;
            let keys = n.r.history.clone().ok_or(FsError::NotDir)?;
            (n.r.what.view(), keys, n.revoked.clone())
        };
        let owner = self.owner(i)?;
        if let Some(err) = revoked {
            return Err(owner.vault_err(&keys[0].name, err));
        }
        let k: usize = name
            .to_str()
            .filter(|s| s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or(FsError::NoEntry)?;
        let key = keys.get(k).ok_or(FsError::NoEntry)?;
        let resolved = owner.resolve_version_file(i, key).await?;
        let attr = self.bind_view(resolved);
        Ok(self.special_entry(attr, self.timings.entry_ttl))
    }

    pub(super) fn view_spec(&self, i: usize) -> Result<&ViewSpec, FsError> {
        self.views()
            .and_then(|v| v.specs.get(i))
            .ok_or(FsError::Internal)
    }
}

#[cfg(test)]
#[path = "view_vaults_tests.rs"]
mod vault_tests;
