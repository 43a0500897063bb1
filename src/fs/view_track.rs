//! What the refresher and the kernel notifier ask of the view tree: the
//! nodes bound to a secret, revoking them, the paths that follow a secret's
//! latest version; and the check of every view when the mount starts.
//!
//! Each core answers for the views of its own vault only: a name of vault B
//! never reaches, revokes or invalidates a view of vault A.

use std::sync::Arc;

use super::view::{VNodes, VWhat};
use super::{lock, FsCore};
use crate::error::FsError;
use crate::secret::{SecretName, SecretProps, VersionId};
use crate::vault::VaultError;

impl FsCore {
    /// This vault's view nodes bound to a version of secret `name` (files
    /// and history directories; keys are not secrets), or with `keys`, to
    /// a version of key `name`.
    fn view_nodes_of(&self, nodes: &VNodes, name: &SecretName, keys: bool) -> Vec<u64> {
        let Some(v) = self.views() else {
            return Vec::new();
        };
        nodes
            .by_ino
            .iter()
            .filter(|(_, n)| self.is_mine(n.r.what.view()))
            .filter(|(_, n)| match &n.r.what {
                VWhat::File(_, k) => !keys && &k.name == name,
                VWhat::History(i, _) => !keys && &v.specs[*i].name == name,
                VWhat::Key(i, _) => keys && &v.specs[*i].name == name,
            })
            .map(|(ino, _)| *ino)
            .collect()
    }

    /// Marks the view nodes of `name` (a secret, or with `keys` a key)
    /// revoked and lets go of their bytes.
    pub(super) fn view_revoke(&self, name: &SecretName, why: &VaultError, keys: bool) -> Vec<u64> {
        let Some(v) = self.views() else {
            return Vec::new();
        };
        let mut nodes = lock(&v.nodes);
        let inos = self.view_nodes_of(&nodes, name, keys);
        for ino in &inos {
            if let Some(n) = nodes.by_ino.get_mut(ino) {
                n.revoked = Some(why.clone());
                n.r.bytes = None;
            }
        }
        inos
    }

    pub(super) fn view_inodes_of(&self, name: &SecretName) -> Vec<u64> {
        match self.views() {
            Some(v) => self.view_nodes_of(&lock(&v.nodes), name, false),
            None => Vec::new(),
        }
    }

    /// View files bound to a secret version, for the refresher.
    pub(super) fn view_bound(&self) -> Vec<(SecretName, Arc<SecretProps>)> {
        let Some(v) = self.views() else {
            return Vec::new();
        };
        lock(&v.nodes)
            .by_ino
            .values()
            .filter(|n| n.revoked.is_none() && self.is_mine(n.r.what.view()))
            .filter_map(|n| match (&n.r.what, &n.r.props) {
                (VWhat::File(_, k), Some(p)) => Some((k.name.clone(), Arc::clone(p))),
                _ => None,
            })
            .collect()
    }

    /// Key versions this vault's key views are bound to, for the refresher.
    pub(super) fn view_key_versions(&self) -> Vec<(SecretName, VersionId)> {
        let Some(v) = self.views() else {
            return Vec::new();
        };
        lock(&v.nodes)
            .by_ino
            .values()
            .filter(|n| n.revoked.is_none())
            .filter_map(|n| match &n.r.what {
                VWhat::Key(i, version) if self.is_mine(*i) => {
                    Some((v.specs[*i].name.clone(), version.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// The directory entries (parent inode, file name) of the views that
    /// follow the latest version of `name`: what the kernel must forget
    /// when `name` rotates or is revoked.
    pub fn view_dentries_of(&self, name: &str) -> Vec<(u64, String)> {
        let Some(v) = self.views() else {
            return Vec::new();
        };
        v.specs
            .iter()
            .enumerate()
            .filter(|(i, s)| s.name.as_str() == name && s.version.is_none() && self.is_mine(*i))
            .filter_map(|(i, s)| Some((v.parents[i], s.path.last()?.clone())))
            .collect()
    }

    /// Checks every view that is not optional, each through the core of
    /// its vault: the mount starts only if each resolves. Binds nothing.
    pub async fn check_views(&self) -> Result<(), (String, FsError)> {
        let Some(v) = self.views() else {
            return Ok(());
        };
        for (i, spec) in v.specs.iter().enumerate() {
            let owner = self.owner(i).map_err(|e| (spec.shown(), e))?;
            match owner.resolve_view(i).await {
                Ok(_) => {}
                Err(FsError::NoEntry) if spec.optional => {}
                Err(e) => return Err((spec.shown(), e)),
            }
        }
        Ok(())
    }
}
